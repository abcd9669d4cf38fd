"""The API's typed errors for session ceilings and lost sandboxes, and the cause it shows."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from orchestrator import Config, FakeBackend
from tests.api_harness import ALICE, BOB, Api, live, new_session, running_api


@pytest.mark.parametrize(
    ("body", "field", "ceiling"),
    [
        ({"pids_limit": 60000}, "pids_limit", "limits.max_pids"),
        ({"memory": "100g"}, "memory", "limits.max_memory"),
        ({"tmpfs_sizes": {"/tmp": "100t"}}, "tmpfs_sizes['/tmp']", "limits.max_tmpfs_size"),
        ({"ttl": 604800}, "ttl", "limits.max_ttl"),
    ],
)
async def test_an_option_over_a_ceiling_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str, ceiling: str
) -> None:
    async with api.client() as alice:
        response = await alice.post("/v1/sessions", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "option_over_limit"
    assert error["field"] == field
    assert ceiling in error["message"]
    assert live(api.backend) == []


async def test_the_per_owner_ceiling_is_a_429_for_that_owner_only(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    api_config.limits.max_sessions_per_owner = 1
    async with running_api(api_config, fake_backend) as api:
        async with api.client(ALICE) as alice, api.client(BOB) as bob:
            await new_session(alice)
            over = await alice.post("/v1/sessions", json={})
            await new_session(bob)
    assert over.status_code == 429
    assert over.json()["error"]["type"] == "session_limit"
    assert "limits.max_sessions_per_owner" in over.json()["error"]["message"]


@contextlib.contextmanager
def resumed_afterwards(pid: int) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize(
    ("how", "state", "cause"),
    [
        (signal.SIGKILL, "crashed", "its sandbox stopped"),
        (signal.SIGSTOP, "broken", "has not answered"),
    ],
)
async def test_a_lost_sandbox_is_a_503_and_the_session_shows_its_failure(
    api_config: Config, fake_backend: FakeBackend, how: signal.Signals, state: str, cause: str
) -> None:
    api_config.session.heartbeat_interval = 0.2
    api_config.session.heartbeat_timeout = 1.0
    async with running_api(api_config, fake_backend) as api, api.client() as alice:
        sid = await new_session(alice)
        healthy = (await alice.get(f"/v1/sessions/{sid}")).json()
        process = next(iter(fake_backend.sandboxes.values())).process
        assert process is not None
        with resumed_afterwards(process.pid):
            os.kill(process.pid, how)
            with trio.fail_after(10):
                while (info := (await alice.get(f"/v1/sessions/{sid}")).json())["state"] == "ready":
                    await trio.sleep(0.05)
            listed = (await alice.get("/v1/sessions")).json()["sessions"]
            exec_ = await alice.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
            files = await alice.get(f"/v1/sessions/{sid}/files", params={"path": "/workspace/x"})
        closed = await alice.delete(f"/v1/sessions/{sid}")
    assert healthy["failure"] is None
    assert info["state"] == state
    assert cause in info["failure"]
    assert listed == [info]
    for response in (exec_, files):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["type"] == "sandbox_lost"
        assert f"is {state}: {info['failure']}" in error["message"]
        assert "open a new session" in error["message"]
    assert closed.status_code == 204


async def test_a_stalled_request_body_is_a_408_from_every_route_never_a_500(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    api_config.api.body_timeout = 0.5
    with capture_logs() as logs:
        answers = await stalled_bodies(api_config, fake_backend)
    for answer in answers[:-1]:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"type": "request_timeout"' in answer
    assert answers[-1] == b"ok\n"
    assert any(entry["event"] == "serving the HTTP API" for entry in logs)  # logs are seen
    assert [entry for entry in logs if entry["log_level"] in ("error", "critical")] == []


async def stalled_bodies(api_config: Config, fake_backend: FakeBackend) -> list[bytes]:
    """Three requests whose bodies stall after one byte, then a command on the session."""
    async with running_api(api_config, fake_backend) as api, api.client() as alice:
        sid = await new_session(alice)
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        answers = []
        for method, target, content_type in [
            ("POST", "/v1/sessions", "application/json"),
            ("POST", f"/v1/sessions/{sid}/exec", "application/json"),
            ("PUT", f"/v1/sessions/{sid}/files?path=/workspace/x", "application/octet-stream"),
        ]:
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(
                f"{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: 100\r\n\r\n{{".encode()
            )
            answer = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    answer += chunk
            await stream.aclose()
            answers.append(answer)
        still = await alice.post(f"/v1/sessions/{sid}/exec", json={"command": "echo ok"})
    return [*answers, still.json()["stdout"].encode()]
