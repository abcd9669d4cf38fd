"""Manners of the command line and the server: a taken port, a reader that goes away, and a
SIGTERM that says what it cut -- each quiet, bounded and leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import docker
import httpx
import pytest

from orchestrator.testing.api_process import ApiProcess, start_api_process

from .conftest import IMAGE

TOKEN = "manners-token"
SBX = [sys.executable, "-m", "orchestrator.cli"]


def _containers_of(client: docker.DockerClient, pid: int) -> list[str]:
    prefix = f"{socket.gethostname()}:{pid}:"
    return [
        c["Id"]
        for c in client.api.containers(all=True, filters={"label": "io.sbx.managed"})
        if c["Labels"].get("io.sbx.supervisor", "").startswith(prefix)
    ]


@pytest.fixture(scope="module")
def server() -> Iterator[ApiProcess]:
    running = start_api_process({"SBX_TOKEN": TOKEN})
    try:
        yield running
    finally:
        running.stop()


def test_a_port_in_use_is_one_line_and_exit_2(
    server: ApiProcess, docker_client: docker.DockerClient
) -> None:
    bind = server.url.removeprefix("http://")
    process = subprocess.Popen(
        [*SBX, "serve", "--bind", bind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SBX_TOKEN": TOKEN},
    )
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert stderr.decode().strip().count("\n") == 0, stderr
    assert f"cannot listen on {bind}: the address is in use".encode() in stderr
    assert b"--bind" in stderr
    assert _containers_of(docker_client, process.pid) == []


@pytest.mark.parametrize("where", ["local", "server"])
def test_a_reader_that_goes_away_ends_sbx_run_quietly(
    where: str, server: ApiProcess, docker_client: docker.DockerClient
) -> None:
    env = {**os.environ, "SBX_TOKEN": TOKEN}
    if where == "server":
        env["SBX_URL"] = server.url
    else:
        env.pop("SBX_URL", None)
    argv = [*SBX, "run", "--image", IMAGE, "--", "sh", "-c", "yes"]
    started = time.monotonic()
    # As `sbx run ... | head -c 10`: read ten bytes, then close the reading end.
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    head = process.stdout.read(10)
    process.stdout.close()
    stderr = process.stderr.read()
    code = process.wait(timeout=120)
    elapsed = time.monotonic() - started
    assert head == b"y\ny\ny\ny\ny\n"
    assert code == 141, stderr  # what a shell shows for a tool SIGPIPE ended
    assert stderr == b"", stderr
    assert elapsed < 60
    assert _containers_of(docker_client, process.pid) == []
    if where == "server":
        sessions = httpx.get(
            f"{server.url}/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()["sessions"]
        assert sessions == []


def test_sigterm_drains_within_its_deadline_and_says_what_it_cut(
    docker_client: docker.DockerClient,
) -> None:
    running = start_api_process({"SBX_TOKEN": TOKEN, "SBX_API__GRACEFUL_TIMEOUT": "2"})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=running.url, headers=headers, timeout=60) as client:
            created = client.post("/v1/sessions", json={"image": IMAGE, "memories": False})
            assert created.status_code == 201, created.text
            session = created.json()["id"]
            quick = client.post(f"/v1/sessions/{session}/exec", json={"command": "true"})
            assert quick.status_code == 200
        slow = subprocess.Popen(
            [
                "curl",
                "-s",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "-H",
                "Content-Type: application/json",
                "-d",
                json.dumps({"command": "sleep 300", "timeout": 600}),
                f"{running.url}/v1/sessions/{session}/exec",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.5)
        started = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        code = running.process.wait(timeout=60)
        elapsed = time.monotonic() - started
        slow.wait(timeout=30)
        log = running.log()
    finally:
        running.stop()
    assert code == 0, log[-3000:]
    assert elapsed < 2 + 10, f"the drain took {elapsed:.1f} s"
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    cut = [line for line in lines if line["event"].startswith("shutdown cut requests")]
    assert cut and cut[0]["cut"] == [f"POST /v1/sessions/{session}/exec from 127.0.0.1"], log
    stopped = next(line for line in lines if line["event"].startswith("HTTP API stopped"))
    assert stopped["requests_cut"] == 1 and stopped["sessions_closed"] == 1
    assert "Traceback" not in log
    assert _containers_of(docker_client, running.pid) == []
