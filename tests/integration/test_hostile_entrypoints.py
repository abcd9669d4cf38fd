"""The hostile-workload suite, through the two ways users reach a sandbox: ``sbx run`` and HTTP.

Every workload must end within its bound, report the truth (exit status,
timeout, truncation, out of memory), leave nothing behind (no container of
its own, no server error, no traceback), and the next call -- in a fresh
session -- must work.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from orchestrator.testing.api_process import ApiProcess, start_api_process

from .conftest import GVISOR, IMAGE

TOKEN = "hostile-token"
GRACE = 2.0  # session.kill_grace by default


@dataclass(frozen=True)
class Workload:
    name: str
    command: str
    timeout: float = 20.0
    memory: str | None = None
    exit_code: int | None = None
    """The status the call must report (``None``: any)."""
    stdout_has: bytes = b""
    stdout_all: tuple[bytes, ...] = ()
    """Lines that must all appear in stdout (each writable mount, each attack)."""
    stdout_lacks: bytes | None = None
    stderr_has: bytes = b""
    timed_out: bool = False
    truncated: bool = False
    oom_killed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    gvisor_timeout: float | None = None
    """The timeout under gVisor, where the workload is slower (README, "Under gVisor")."""

    @property
    def limit(self) -> float:
        """The command's timeout under this run's runtime."""
        return self.gvisor_timeout if GVISOR and self.gvisor_timeout else self.timeout


WRITABLE_MOUNTS = ("/workspace", "/tmp", "/var/tmp", "/home/sandbox")

WORKLOADS = [
    Workload(
        "fork bomb",
        "bomb() { bomb | bomb & }; bomb; sleep 30",
        timeout=8,
        timed_out=True,
        exit_code=124,
    ),
    Workload(
        "memory bomb in a grandchild",
        "python3 -c \"x = [b'a' * (64 << 20) for _ in range(40)]\"; echo rc=$?",
        memory="256m",
        exit_code=0,
        stdout_has=b"rc=137",
        oom_killed=True,
    ),
    Workload(
        "filling each writable mount",
        "for d in /workspace /tmp /var/tmp /home/sandbox; do"
        ' head -c 3G /dev/zero > $d/fill || echo "$d full"; rm -f $d/fill; done',
        memory="256m",
        exit_code=0,
        stdout_all=tuple(f"{d} full".encode() for d in WRITABLE_MOUNTS),
        stderr_has=b"No space left on device",
    ),
    Workload(
        "a stdout flood",
        "yes | head -c 200M; echo done",
        exit_code=0,
        truncated=True,
        gvisor_timeout=90,  # ptrace: a host context switch per system call of the pipe
    ),
    Workload(
        "a single-line flood",
        "head -c 100M /dev/zero | tr '\\0' x; echo",
        exit_code=0,
        truncated=True,
        gvisor_timeout=90,
    ),
    Workload(
        "a process that ignores TERM",
        "trap '' TERM; while :; do sleep 1; done",
        timeout=3,
        timed_out=True,
        exit_code=124,
    ),
    Workload(
        "daemons that escape with setsid and a double fork",
        "setsid sleep 300 & (sleep 301 &); echo started",
        exit_code=0,
        stdout_has=b"started",
    ),
    # kill(-1) reaches every process the caller may signal but itself: never the guest.
    Workload(
        "kill -9 -1", "kill -9 -1; sleep 1; echo survived", exit_code=0, stdout_has=b"survived"
    ),
    Workload(
        "a closed stdout and stderr",
        "exec >&- 2>&-; sleep 0.5; echo gone",
        exit_code=1,
    ),
    # With networking off (the default) nothing is reachable, by address or by name.
    Workload(
        "egress by IP and by name",
        "for a in 1.1.1.1/53 172.17.0.1/2375 127.0.0.1/1; do"
        ' (exec 3<>/dev/tcp/${a%/*}/${a#*/}) 2>/dev/null && echo "reached $a"; done;'
        " getent hosts example.com || echo 'no name'; echo 'egress tried'",
        exit_code=0,
        stdout_all=(b"no name", b"egress tried"),
        stdout_lacks=b"reached",
    ),
    Workload(
        "signalling the guest and writing its descriptors",
        "p=$(cut -d' ' -f4 /proc/$$/stat); n=0;"
        " for s in STOP TERM KILL; do kill -$s $p 2>/dev/null && n=$((n+1)); done;"
        # Under gVisor the guest's 0 and 1 (it keeps the channel elsewhere) are /dev/null,
        # which anyone may write: the count is of its real descriptors.
        " for f in 0 1 2; do t=$(readlink /proc/$p/fd/$f 2>/dev/null);"
        ' [ "$t" = /dev/null ] && continue;'
        " (echo x > /proc/$p/fd/$f) 2>/dev/null && n=$((n+1)); done;"
        " echo reached=$n",
        exit_code=0,
        stdout_has=b"reached=0",
    ),
    Workload(
        "tampering with the guest",
        "p=$(cut -d' ' -f4 /proc/$$/stat); kill -STOP $p; cat /proc/$p/fd/0; echo rc=$?",
        exit_code=0,
        stdout_has=b"rc=1",
        stderr_has=b"Operation not permitted",
    ),
]

IDS = [w.name for w in WORKLOADS]


def _bound(w: Workload) -> float:
    """The wall-clock allowance: the command's timeout, the kill grace, 2 s, and start-up
    and removal (under gVisor, removing a sandbox of many processes takes seconds more)."""
    return w.limit + GRACE + 2 + 15 + (15 if GVISOR else 0)


def _containers_of(client: docker.DockerClient, pid: int, within: float = 0.0) -> list[str]:
    """The sandboxes the ``sbx run`` process ``pid`` made (its supervisor label names it;
    other programs on this machine make sandboxes of their own meanwhile), waiting up to
    ``within`` seconds for the engine to finish removing them."""
    prefix = f"{socket.gethostname()}:{pid}:"
    deadline = time.monotonic() + within
    while True:
        found = [
            c["Id"]
            for c in client.api.containers(all=True, filters={"label": "io.sbx.managed"})
            if c["Labels"].get("io.sbx.supervisor", "").startswith(prefix)
        ]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def _assert_output(w: Workload, stdout: bytes, stderr: bytes) -> None:
    assert w.stdout_has in stdout, stdout[-2000:]
    for line in w.stdout_all:
        assert line in stdout, (line, stdout[-2000:], stderr[-2000:])
    if w.stdout_lacks is not None:
        assert w.stdout_lacks not in stdout, stdout[-2000:]
    assert w.stderr_has in stderr, stderr[-2000:]


@pytest.mark.parametrize("w", WORKLOADS, ids=IDS)
def test_through_sbx_run(w: Workload, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    argv = [sys.executable, "-m", "orchestrator.cli", "run", "--image", IMAGE]
    argv += ["--timeout", f"{w.limit:g}"]
    if w.memory:
        argv += ["--memory", w.memory]
    started = time.monotonic()
    process = subprocess.Popen(
        [*argv, "--", "bash", "-c", w.command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    stdout, stderr = process.communicate(timeout=_bound(w) + 30)
    r = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    elapsed = time.monotonic() - started
    assert elapsed < _bound(w), f"{w.name} took {elapsed:.1f} s"
    assert b"Traceback" not in r.stderr, r.stderr[-2000:]
    if w.exit_code is not None:
        assert r.returncode == w.exit_code, (r.returncode, r.stderr[-2000:])
    _assert_output(w, r.stdout[-100_000:], r.stderr)
    if w.oom_killed:
        assert b"ran out of memory" in r.stderr
    left = _containers_of(docker_client, process.pid)
    if left and GVISOR:
        # Under gVisor's ptrace platform the engine takes 10-80 s to tear down a sandbox a
        # fork bomb filled when the host is busy (measured here; README, "Under gVisor").
        # sbx asked for the removal, kept its own deadline and said so; the engine goes on
        # with the removal after sbx exits, and must finish it.
        assert b"still being removed at shutdown" in r.stderr, r.stderr[-3000:]
        left = _containers_of(docker_client, process.pid, within=150)
    assert left == [], f"the sandbox was left behind after {elapsed:.1f} s: {r.stderr[-3000:]!r}"
    assert list(scratch.iterdir()) == []  # no temporary file of sbx's outlives it
    after = subprocess.run(
        [*argv[:6], "--", "echo", "next"], capture_output=True, timeout=120, check=False
    )
    assert after.returncode == 0 and after.stdout == b"next\n", after.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    scratch = tmp_path_factory.mktemp("server-tmp")
    running = start_api_process({"SBX_TOKEN": TOKEN, "TMPDIR": str(scratch)})
    yield running
    log = running.log_path.read_bytes()
    running.stop()
    assert b"Traceback" not in log and b'"internal_error"' not in log, log[-4000:]
    assert list(scratch.iterdir()) == []  # no temporary file of the server outlives it


async def _one_workload(client: httpx.AsyncClient, w: Workload, session: str) -> None:
    """Run ``w`` in ``session``: on time, a true report, and the session still answers."""
    started = time.monotonic()
    r = await client.post(
        f"/v1/sessions/{session}/exec",
        json={"command": w.command, "timeout": w.limit},
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert elapsed < w.limit + GRACE + 2 + 1, f"{w.name} took {elapsed:.1f} s"
    body = r.json()
    if w.exit_code is not None and not w.timed_out:  # 124 is the CLI's word for it
        assert body["exit_code"] == w.exit_code, body.get("stderr", "")[-2000:]
    assert body["timed_out"] is w.timed_out
    assert body["truncated"] is w.truncated
    assert body["oom_killed"] is w.oom_killed
    stdout = (body.get("stdout") or "").encode()[-100_000:]
    _assert_output(w, stdout, (body.get("stderr") or "").encode())
    # The same session still answers; then it goes, and a fresh one works.
    again = await client.post(f"/v1/sessions/{session}/exec", json={"command": "echo again"})
    assert again.status_code == 200 and again.json()["stdout"] == "again\n", again.text


@pytest.mark.parametrize("w", WORKLOADS, ids=IDS)
async def test_through_the_http_api(
    w: Workload, server: ApiProcess, docker_client: docker.DockerClient
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=120, headers=headers) as client:
        options: dict[str, Any] = {"image": IMAGE, "memories": False}
        if w.memory:
            options["memory"] = w.memory
        created = await client.post("/v1/sessions", json=options)
        assert created.status_code == 201, created.text
        session = created.json()["id"]
        try:
            await _one_workload(client, w, session)
        finally:  # a failed check still ends the session: the next test must find nothing
            gone = await client.delete(f"/v1/sessions/{session}")
        assert gone.status_code == 204, gone.text
        fresh = await client.post("/v1/sessions", json={"image": IMAGE, "memories": False})
        assert fresh.status_code == 201, fresh.text
        next_id = fresh.json()["id"]
        ok = await client.post(f"/v1/sessions/{next_id}/exec", json={"command": "echo next"})
        assert ok.status_code == 200 and ok.json()["stdout"] == "next\n", ok.text
        assert (await client.delete(f"/v1/sessions/{next_id}")).status_code == 204
    # Both sessions are gone, and so are their sandboxes (a slow teardown under gVisor
    # finishes in the engine after the answer).
    left = _containers_of(docker_client, server.pid, within=150 if GVISOR else 15)
    assert left == [], f"{w.name}: sandboxes left behind by the server"


async def test_input_that_cannot_be_sent_is_a_typed_4xx_over_http(server: ApiProcess) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, timeout=120, headers=headers) as client:
        created = await client.post("/v1/sessions", json={"image": IMAGE, "memories": False})
        session = created.json()["id"]
        # JSON may carry a lone surrogate as an escape; no program could read it.
        lone = await client.post(
            f"/v1/sessions/{session}/exec", content=b'{"command": "echo \\udcff"}'
        )
        assert lone.status_code == 422, lone.text
        assert lone.json()["error"]["type"] == "invalid_input"
        big = await client.post(f"/v1/sessions/{session}/exec", json={"command": "x" * (3 << 20)})
        assert big.status_code == 413, big.text
        assert big.json()["error"]["type"] == "input_too_large"
        assert "session.max_command_bytes" in big.json()["error"]["message"]
        assert (await client.delete(f"/v1/sessions/{session}")).status_code == 204


async def test_symlink_escapes_through_the_file_api_are_typed_4xx(server: ApiProcess) -> None:
    """Links a command plants inside the roots lead nowhere outside them over HTTP either:
    reads, writes, listings and folder downloads through them are refused as such."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=120, headers=headers) as client:
        created = await client.post("/v1/sessions", json={"image": IMAGE, "memories": False})
        assert created.status_code == 201, created.text
        base = f"/v1/sessions/{created.json()['id']}"
        planted = await client.post(
            f"{base}/exec",
            json={
                "command": "ln -s /etc /workspace/etc && ln -s /etc/passwd /workspace/pw"
                " && ln -s /proc/1/root /workspace/root && ln -s /opt/sbx /workspace/guest"
            },
        )
        assert planted.status_code == 200 and planted.json()["exit_code"] == 0, planted.text
        attempts = [
            client.get(f"{base}/files", params={"path": "/workspace/pw"}),
            client.get(f"{base}/files", params={"path": "/workspace/etc/passwd"}),
            client.get(f"{base}/files", params={"path": "/workspace/root/etc/hostname"}),
            client.get(f"{base}/files", params={"path": "/workspace/guest/guest.py"}),
            client.get(f"{base}/files", params={"path": "/workspace/../etc/passwd"}),
            client.put(f"{base}/files", params={"path": "/workspace/etc/evil"}, content=b"x"),
            client.get(f"{base}/files/list", params={"path": "/workspace/etc"}),
            client.get(f"{base}/dirs", params={"path": "/workspace/root"}),
        ]
        for attempt in attempts:
            r = await attempt
            assert r.status_code == 403, (r.request.url, r.status_code, r.text)
            assert r.json()["error"]["type"] == "path_not_allowed", r.text
        ok = await client.post(f"{base}/exec", json={"command": "echo still here"})
        assert ok.status_code == 200 and ok.json()["stdout"] == "still here\n", ok.text
        assert (await client.delete(base)).status_code == 204
