"""A Docker Engine of a test's own, to stop and restart with sessions open.

Fault-injection tests must never touch the host's engine.  ``PrivateEngine``
starts a ``dockerd`` in a network namespace of its own (``unshare --net``; so its bridge
handling, even ``--bridge none``, cannot disturb the host's ``docker0``),
with its own data root, exec root, pid file, containerd namespace and unix
socket, all under one temporary directory that ``close`` removes.  Its
sandboxes run without a network, so the namespace needs no link to the
outside.  Everything here blocks: call it through ``trio.to_thread``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker

__all__ = ["PrivateEngine"]


class PrivateEngine:
    """One ``dockerd`` in its own network namespace; ``url`` reaches it."""

    def __init__(self, name: str = "sbxfault") -> None:
        self.name = f"{name}-{os.getpid()}"
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.socket = self.root / "docker.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 60) -> None:
        """Start ``dockerd`` and wait until it answers."""
        config = self.root / "daemon.json"  # never the host engine's /etc/docker/daemon.json
        config.write_text("{}")
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 -- the daemon's, closed below
        try:
            self._process = subprocess.Popen(
                [
                    # ``unshare -n`` rather than ``ip netns exec``: the latter remounts /sys,
                    # hiding the cgroup mounts dockerd needs.  The namespace ends with it.
                    "unshare",
                    "--net",
                    "sh",
                    "-c",
                    'ip link set lo up && exec "$@"',
                    "dockerd",
                    "dockerd",
                    "--config-file",
                    str(config),
                    "--host",
                    self.url,
                    "--data-root",
                    str(self.root / "data"),
                    "--exec-root",
                    str(self.root / "exec"),
                    "--pidfile",
                    str(self.root / "docker.pid"),
                    "--containerd-namespace",
                    self.name,
                    "--containerd-plugins-namespace",
                    f"{self.name}-plugins",
                    "--bridge",
                    "none",
                    "--iptables=false",
                    "--ip-masq=false",
                    "--storage-driver",
                    "overlay2",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"dockerd exited at start:\n{self.log[-3000:]}")
            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=self.url, timeout=5)
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer within {timeout:g} s:\n{self.log[-3000:]}")

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, as a service manager stops it (it stops its containers first)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def load_image(self, ref: str, source_url: str | None = None) -> None:
        """Copy ``ref`` from the host's engine (or ``source_url``'s) into this one."""
        source = ["docker"] + (["-H", source_url] if source_url else [])
        with subprocess.Popen([*source, "save", ref], stdout=subprocess.PIPE) as saving:
            subprocess.run(
                ["docker", "-H", self.url, "load", "-q"],
                stdin=saving.stdout,
                stdout=subprocess.DEVNULL,
                check=True,
            )
        if saving.returncode:
            raise RuntimeError(f"docker save {ref} failed ({saving.returncode})")

    def close(self) -> None:
        """Stop the daemon, remove its containers' state, its namespace and its files."""
        try:
            if self._process is not None and self._process.poll() is None:
                with contextlib.suppress(Exception):
                    client = docker.DockerClient(base_url=self.url, timeout=30)
                    for container in client.containers.list(all=True):
                        container.remove(force=True)
                    client.close()
            self.stop()
        finally:
            # Mounts left by an unclean stop would make the tree undeletable.
            subprocess.run(
                ["sh", "-c", f"grep -o ' {self.root}[^ ]*' /proc/mounts | sort -r | "
                 "xargs -r -n1 umount -l"],
                check=False,
            )  # fmt: skip
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
