"""Sessions opened with ``restart_on_crash``: a lost sandbox is replaced by a fresh one, calls
in flight fail with the cause, and the next result -- exec, shell or tool batch -- says the
old state is gone; past ``session.max_restarts`` the session stays crashed.

The guest is the real one, run as a local process by the fake backend: killing it is a
sandbox that dies, stopping it one whose guest goes silent."""

from __future__ import annotations

import os
import signal

import pytest
import trio

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.errors import SandboxLost
from orchestrator.session import Session
from tests.api_harness import live, running_api


@pytest.fixture
def quick_heartbeat(fake_config: Config) -> Config:
    fake_config.session.heartbeat_interval = 0.2
    fake_config.session.heartbeat_timeout = 1.0
    return fake_config


def _kill(backend: FakeBackend, session: Session, sig: int = signal.SIGKILL) -> str:
    assert session.sandbox_id is not None
    process = backend.sandboxes[session.sandbox_id].process
    assert process is not None
    os.kill(process.pid, sig)
    return session.sandbox_id


async def _restarted(session: Session, count: int) -> None:
    with trio.fail_after(10):
        while session.restarts < count or session.state != "ready":
            await trio.sleep(0.02)


async def test_a_crashed_sandbox_is_replaced_and_the_next_result_says_so(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session(restart_on_crash=True)
        old = _kill(fake_backend, session)
        await _restarted(session, 1)
        assert session.sandbox_id != old
        assert live(fake_backend) == [session.sandbox_id]  # the old one was removed
        first = await session.exec(["echo", "after"])
        assert first.stdout == b"after\n"
        assert first.sandbox_restarted is not None
        assert "crashed" in first.sandbox_restarted and "gone" in first.sandbox_restarted
        assert (await session.exec(["true"])).sandbox_restarted is None  # said once
        described = session.describe()
        assert described["restarts"] == 1 and described["state"] == "ready"
        assert described["last_restart"]["sandbox"] == old
        assert "its sandbox stopped" in described["last_restart"]["cause"]
        await session.close()
    assert live(fake_backend) == []


async def test_a_call_in_flight_fails_with_the_cause_and_a_silent_guest_counts_too(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session(restart_on_crash=True)
        outcome: list[BaseException] = []

        async def long_call() -> None:
            try:
                await session.exec(["sleep", "30"])
            except SandboxLost as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_call)
            await trio.sleep(0.3)
            _kill(fake_backend, session, signal.SIGSTOP)  # the guest goes silent
        assert len(outcome) == 1 and "broken" in str(outcome[0])
        await _restarted(session, 1)
        shell = await session.shell("echo $((6*7))")
        assert shell.stdout == b"42\n" and shell.sandbox_restarted is not None
        assert "broken" in shell.sandbox_restarted
        await session.close()
    assert live(fake_backend) == []


async def test_the_next_tool_batch_opens_with_the_notice(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session(restart_on_crash=True)
        _kill(fake_backend, session)
        await _restarted(session, 1)
        blocks = [
            {"type": "tool_use", "id": "a", "name": "bash", "input": {"command": "echo hi"}},
            {"type": "tool_use", "id": "b", "name": "bash", "input": {"command": "echo two"}},
        ]
        results = await session.run_tools(blocks)
        head = results[0]["content"]
        assert head[0]["type"] == "text" and head[0]["text"].startswith("[sbx: the session's")
        assert any("hi" in block.get("text", "") for block in head[1:])
        assert all("sbx: the session" not in str(block) for block in results[1]["content"])
        again = await session.run_tools([{**blocks[0], "id": "c"}])
        assert "sbx: the session" not in str(again[0]["content"])
        await session.close()


async def test_past_max_restarts_the_session_stays_crashed(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    quick_heartbeat.session.max_restarts = 1
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session(restart_on_crash=True)
        _kill(fake_backend, session)
        await _restarted(session, 1)
        _kill(fake_backend, session)
        with trio.fail_after(5):
            while session.state == "ready":
                await trio.sleep(0.02)
        assert session.state == "crashed" and session.restarts == 1
        with pytest.raises(SandboxLost, match="crashed"):
            await session.exec("true")
        await session.close()
    assert live(fake_backend) == []


async def test_over_http_the_session_shows_its_restarts_and_exec_says_so(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    api_config.session.heartbeat_interval = 0.2
    api_config.session.heartbeat_timeout = 1.0
    async with running_api(api_config, fake_backend) as api, api.client() as client:
        created = await client.post("/v1/sessions", json={"restart_on_crash": True})
        assert created.status_code == 201, created.text
        session_id, old = created.json()["id"], created.json()["sandbox_id"]
        process = fake_backend.sandboxes[old].process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        with trio.fail_after(10):
            while (shown := (await client.get(f"/v1/sessions/{session_id}")).json())[
                "restarts"
            ] < 1 or shown["state"] != "ready":
                await trio.sleep(0.05)
        assert shown["sandbox_id"] != old and "crashed" in shown["last_restart"]["state"]
        ran = await client.post(f"/v1/sessions/{session_id}/exec", json={"command": "true"})
        assert ran.status_code == 200 and "crashed" in ran.json()["sandbox_restarted"]
        assert (await client.delete(f"/v1/sessions/{session_id}")).status_code == 204
    assert live(fake_backend) == []
