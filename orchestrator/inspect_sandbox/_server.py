"""The ``sbx serve`` an eval starts for itself when it is given no server to use.

One per process, shared by the eval's tasks (counted in and out), bound to
a loopback port with a fresh token, and with limits raised to what inspect
expects of a sandbox (50 MiB files and stdin).  Its pid is recorded under
``~/.cache/sbx/inspect/``, so ``inspect sandbox cleanup sbx`` can stop one an
eval killed with SIGKILL left behind (its sandboxes go with it: they end when
their server's channel closes).  Blocking work (starting, stopping) runs in
a worker thread; this module must not know about samples or inspect.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from orchestrator.errors import SbxError

__all__ = [
    "OwnServer",
    "acquire_server",
    "current_server",
    "release_server",
    "stale_servers",
    "start_server",
]

STATE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sbx" / "inspect"

SERVER_ENV = {
    "SBX_SESSION__FILE_SIZE_LIMIT": "64m",
    "SBX_API__MAX_BODY": "256m",
}
"""Limits of the server an eval starts: inspect's checks move 50 MiB files and stdin."""


class ServerStartError(SbxError):
    """The eval's own ``sbx serve`` did not start."""

    remedy = "run `sbx doctor`, or start `sbx serve` yourself and set SBX_URL and SBX_TOKEN"


@dataclass
class OwnServer:
    """A running ``sbx serve`` child: its URL and token."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    pid_file: Path

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (its sessions are closed), then SIGKILL past ``timeout``."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout)
        finally:
            self.log_path.unlink(missing_ok=True)
            self.pid_file.unlink(missing_ok=True)


def start_server(timeout: float = 60.0) -> OwnServer:
    """Start ``sbx serve`` on a free loopback port; blocks until it answers."""
    token = secrets.token_urlsafe(24)
    handle, name = tempfile.mkstemp(prefix="sbx-inspect-serve-", suffix=".log")
    log_path = Path(name)
    env = {**os.environ, **SERVER_ENV, "SBX_TOKEN": token}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "orchestrator.cli"),
            *("--log-format", "json", "--log-level", "info"),
            *("serve", "--bind", "127.0.0.1:0"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=handle,
        env=env,
        start_new_session=True,  # a ^C to inspect is inspect's to handle, not the server's
    )
    os.close(handle)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    pid_file = STATE_DIR / f"{process.pid}.json"
    pid_file.write_text(json.dumps({"pid": process.pid, "parent": os.getpid()}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"serving the HTTP API"' in line:
                return OwnServer(json.loads(line)["url"], token, process, log_path, pid_file)
        time.sleep(0.05)
    tail = log_path.read_text(errors="replace")[-1500:]
    OwnServer("", token, process, log_path, pid_file).stop(timeout=5)
    raise ServerStartError(f"sbx serve for the eval did not start: {tail.strip() or 'no output'}")


class _Shared:
    """The process's own server and how many tasks use it."""

    server: OwnServer | None = None
    users = 0
    lock = threading.Lock()  # not an anyio lock: tasks of several event loops may share it


def _acquire(count: bool = True) -> OwnServer:
    with _Shared.lock:
        server = _Shared.server
        if server is None or server.process.poll() is not None:
            server = _Shared.server = start_server()
            atexit.register(server.stop)
            _Shared.users += 0 if count else 1  # started outside a task: kept until exit
        _Shared.users += 1 if count else 0
        return server


def _release() -> None:
    with _Shared.lock:
        _Shared.users = max(0, _Shared.users - 1)
        server = _Shared.server
        if _Shared.users or server is None:
            return
        _Shared.server = None
    atexit.unregister(server.stop)
    server.stop()


async def acquire_server() -> OwnServer:
    """The process's own server, started on first use; ``release_server`` when done."""
    return await anyio.to_thread.run_sync(_acquire, abandon_on_cancel=False)


async def current_server() -> OwnServer:
    """The process's own server for a sample, started if no task started it (kept till exit)."""
    return await anyio.to_thread.run_sync(_acquire, False)


async def release_server() -> None:
    """One user fewer; the last one stops the server (shielded: it must not be left)."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(_release)


def stale_servers() -> list[int]:
    """Stop servers an eval started whose eval process is gone; their pids."""
    stopped: list[int] = []
    if not STATE_DIR.is_dir():
        return stopped
    for pid_file in STATE_DIR.glob("*.json"):
        try:
            record = json.loads(pid_file.read_text())
            pid, parent = int(record["pid"]), int(record["parent"])
        except (OSError, ValueError, KeyError):
            pid_file.unlink(missing_ok=True)
            continue
        if _alive(parent) and parent != os.getpid():
            continue
        if _alive(pid) and _is_sbx_serve(pid):
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        pid_file.unlink(missing_ok=True)
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_sbx_serve(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"orchestrator.cli" in cmdline and b"serve" in cmdline
