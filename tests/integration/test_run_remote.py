"""`sbx run` as a thin client of a running server that keeps spare sandboxes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import docker
import pytest

from orchestrator.config import load_config, sandbox_memory_limit
from orchestrator.testing.api_process import ApiProcess, start_api_process

from .conftest import IMAGE

TOKEN = "remote-run-token"
SBX = [sys.executable, "-m", "orchestrator.cli"]


@pytest.fixture(scope="module")
def pool_server() -> Iterator[ApiProcess]:
    running = start_api_process(
        {
            "SBX_TOKEN": TOKEN,
            "SBX_POOL__SIZE": "2",
            "SBX_POOL__IMAGES": json.dumps([IMAGE]),
        }
    )
    try:
        yield running
    finally:
        running.stop()


def sbx_remote(
    server: ApiProcess, *args: str, stdin: bytes | None = None, url: bool = True
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "SBX_TOKEN": TOKEN}
    if url:
        env["SBX_URL"] = server.url
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=180,
        check=False,
        env=env,
    )


def test_output_bytes_and_exit_code_pass_through(pool_server: ApiProcess) -> None:
    r = sbx_remote(
        pool_server,
        "run",
        "--image",
        IMAGE,
        "--",
        "sh",
        "-c",
        "printf 'out\\377'; printf err >&2; exit 3",
    )
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\xff", b"err")


def test_a_timeout_exits_124_and_a_missing_command_127(pool_server: ApiProcess) -> None:
    assert sbx_remote(pool_server, "run", "--timeout", "1", "--", "sleep", "30").returncode == 124
    missing = sbx_remote(pool_server, "run", "--", "no-such-tool")
    assert missing.returncode == 127
    assert b"no-such-tool" in missing.stderr


def test_env_workdir_stdin_and_limits_reach_the_sandbox(pool_server: ApiProcess) -> None:
    r = sbx_remote(
        pool_server,
        "run",
        "-e",
        "GREETING=hej",
        "-w",
        "/tmp",
        "--memory",
        "256m",
        "-i",
        "--",
        "sh",
        "-c",
        "cat; pwd; echo $GREETING; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
        "2>/dev/null || cat /sys/fs/cgroup/memory.max",
        stdin=b"piped\n",
    )
    assert r.returncode == 0, r.stderr
    # The cgroup holds the processes' 256 MiB and the mounts (tmpfs pages are memory).
    sandbox = load_config().sandbox
    limit = sandbox_memory_limit(256 << 20, sandbox.tmpfs_for(256 << 20), sandbox.shm_size)
    assert r.stdout.split(b"\n")[:4] == [b"piped", b"/tmp", b"hej", str(limit).encode()]


def test_runs_with_default_options_use_spares(pool_server: ApiProcess) -> None:
    before = pool_server.log().count("session opened on a spare sandbox")
    r = sbx_remote(pool_server, "run", "--image", IMAGE, "--", "true")
    assert r.returncode == 0, r.stderr
    assert pool_server.log().count("session opened on a spare sandbox") == before + 1


def test_server_errors_are_one_clear_line(pool_server: ApiProcess) -> None:
    r = sbx_remote(pool_server, "run", "--image", "sbx-nonexistent", "--", "true")
    assert r.returncode == 125
    assert b"image sbx-nonexistent not found" in r.stderr
    assert b"Traceback" not in r.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", "--url", pool_server.url, "--", "true"],
        capture_output=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "SBX_TOKEN"},
    )
    assert wrong.returncode == 125
    assert b"HTTP 401" in wrong.stderr


def test_no_server_names_the_fixes() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "--url",
            "http://127.0.0.1:9",
            "--",
            "true",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 125
    assert b"cannot reach the sbx API" in r.stderr
    assert b"--local" in r.stderr


def test_local_overrides_the_server() -> None:
    r = subprocess.run(
        [*SBX, "run", "--local", "--image", IMAGE, "--", "echo", "here"],
        capture_output=True,
        timeout=180,
        check=False,
        env={**os.environ, "SBX_URL": "http://127.0.0.1:9"},  # nobody listens there
    )
    assert (r.returncode, r.stdout) == (0, b"here\n"), r.stderr


def test_stopping_the_server_removes_its_spares(docker_client: docker.DockerClient) -> None:
    own = start_api_process(
        {"SBX_TOKEN": TOKEN, "SBX_POOL__SIZE": "1", "SBX_POOL__IMAGES": json.dumps([IMAGE])}
    )
    try:
        import time

        deadline = time.monotonic() + 60
        while '"session ready"' not in own.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert '"session ready"' in own.log(), own.log()[-2000:]
        spares = [
            json.loads(line)["sandbox"]
            for line in own.log().splitlines()
            if line.startswith("{") and '"session ready"' in line
        ]
    finally:
        assert own.stop() == 0
    for sandbox in spares:
        assert docker_client.containers.list(all=True, filters={"id": sandbox}) == []


def test_ctrl_c_removes_the_session_on_the_server(pool_server: ApiProcess) -> None:
    import signal
    import time

    import httpx

    env = {**os.environ, "SBX_TOKEN": TOKEN, "SBX_URL": pool_server.url}
    process = subprocess.Popen(
        [*SBX, "run", "--", "sh", "-c", "echo started; sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"started\n"  # the command is running remotely
        sessions = httpx.get(f"{pool_server.url}/v1/sessions", headers=headers).json()["sessions"]
        assert len(sessions) == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = httpx.get(f"{pool_server.url}/v1/sessions", headers=headers).json()["sessions"]
        if not left:
            break
        time.sleep(0.1)
    assert left == []


def test_exec_in_an_open_session_passes_bytes_and_status(pool_server: ApiProcess) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    sid = httpx.post(
        f"{pool_server.url}/v1/sessions", json={"memories": False}, headers=headers
    ).json()["id"]
    try:
        r = sbx_remote(pool_server, "exec", sid, "--", "sh", "-c", "printf 'a\\377'; exit 4")
        assert (r.returncode, r.stdout) == (4, b"a\xff"), r.stderr
        assert (
            sbx_remote(pool_server, "exec", "--timeout", "1", sid, "--", "sleep", "30").returncode
            == 124
        )
        gone = sbx_remote(pool_server, "exec", "nosuchsession", "--", "true")
        assert gone.returncode == 125 and b"nosuchsession" in gone.stderr
    finally:
        httpx.delete(f"{pool_server.url}/v1/sessions/{sid}", headers=headers)
