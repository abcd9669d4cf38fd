"""A sandbox lost under a live session: noticed, reported with its cause, removed; calls bounded.

The guest here is the real one, run as a local process by the fake backend,
so stopping it with SIGSTOP is exactly a guest that stops answering.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal

import pytest
import trio

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.errors import OperationTimeout, SandboxGone


@pytest.fixture
def quick_heartbeat(fake_config: Config) -> Config:
    fake_config.session.heartbeat_interval = 0.2
    fake_config.session.heartbeat_timeout = 1.0
    return fake_config


def _guest_pid(backend: FakeBackend, sandbox_id: str | None) -> int:
    assert sandbox_id is not None
    process = backend.sandboxes[sandbox_id].process
    assert process is not None
    return process.pid


async def test_a_stopped_guest_turns_the_session_broken_and_its_sandbox_is_removed(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session()
        assert (await session.exec("echo ok")).stdout == b"ok\n"
        pid = _guest_pid(fake_backend, session.sandbox_id)
        os.kill(pid, signal.SIGSTOP)
        try:
            with trio.fail_after(5):
                while session.state == "ready":
                    await trio.sleep(0.05)
            assert session.state == "broken"
            assert session.failure is not None and "not answered for 1 s" in session.failure
            events = fake_backend.sandboxes[session.sandbox_id or ""].events
            with trio.fail_after(5):
                while "remove" not in events:
                    await trio.sleep(0.05)
            with pytest.raises(SandboxGone, match="broken: its guest has not answered"):
                await session.exec("echo again")
            assert session.describe()["failure"] == session.failure
            # Still listed (with its cause) until it is closed.
            assert orch.get_session(session.id) is session
        finally:
            _resume(pid)
        await session.close()
        assert session.state == "closed"


async def test_a_call_waiting_on_a_stopped_guest_fails_with_the_cause_not_a_timeout(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session()
        pid = _guest_pid(fake_backend, session.sandbox_id)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: trio.to_thread.run_sync(_stop_soon, pid))
            with pytest.raises(SandboxGone, match="broken"):
                await session.exec("sleep 60", timeout=60)
        _resume(pid)
        # Noticed by the heartbeat within interval + timeout, not at the command's 60 s.
        assert trio.current_time() - started < 5
        await session.close()


def _resume(pid: int) -> None:
    """Let a stopped guest go on (if it was not removed meanwhile)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _stop_soon(pid: int) -> None:
    import time

    time.sleep(0.3)
    os.kill(pid, signal.SIGSTOP)


async def test_no_call_outlives_its_timeout_plus_the_grace_plus_two_seconds(
    fake_config: Config, fake_backend: FakeBackend
) -> None:
    # The heartbeat is slower than the call here: the call's own bound must hold.
    fake_config.session.heartbeat_timeout = 30
    async with Orchestrator(fake_config, backend=fake_backend) as orch:
        session = await orch.open_session()
        pid = _guest_pid(fake_backend, session.sandbox_id)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = trio.current_time()
            with pytest.raises(OperationTimeout, match=r"timeout \(1 s\) plus the kill grace"):
                await session.exec("true", timeout=1)
            bound = 1 + fake_config.session.kill_grace + 2
            assert trio.current_time() - started <= bound + 0.3
        finally:
            _resume(pid)
        await session.close()


async def test_a_sandbox_that_dies_turns_the_session_crashed(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session()
        os.kill(_guest_pid(fake_backend, session.sandbox_id), signal.SIGKILL)
        with trio.fail_after(5):
            while session.state == "ready":
                await trio.sleep(0.05)
        assert session.state == "crashed"
        with pytest.raises(SandboxGone, match="crashed: its sandbox stopped"):
            await session.exec("true")
        await session.close()


async def test_the_heartbeat_does_not_keep_a_session_from_idling_out(
    quick_heartbeat: Config, fake_backend: FakeBackend
) -> None:
    quick_heartbeat.session.idle_timeout = 1.0
    async with Orchestrator(quick_heartbeat, backend=fake_backend) as orch:
        session = await orch.open_session()
        with trio.fail_after(5):
            while session.state != "closed":
                await trio.sleep(0.05)
        assert session.close_reason == "idle timeout"


@pytest.mark.parametrize(
    ("events", "state", "cause"),
    [
        ([("died", "exit code 137")], "crashed", "its sandbox stopped (exit code 137)"),
        ([("oom", ""), ("died", "exit code 137")], "crashed", "ran out of memory as a whole"),
        ([("paused", "")], "broken", "paused from outside"),
        ([("removed", "")], "crashed", "removed from outside"),
    ],
)
async def test_the_engines_word_turns_the_session_at_once(
    fake_config: Config,
    fake_backend: FakeBackend,
    events: list[tuple[str, str]],
    state: str,
    cause: str,
) -> None:
    from orchestrator.backends.base import SandboxEvent

    fake_config.session.heartbeat_timeout = 60  # only the engine's word can be quick here
    async with Orchestrator(fake_config, backend=fake_backend) as orch:
        session = await orch.open_session()
        assert session.sandbox_id is not None
        with trio.fail_after(5):
            while not fake_backend._watchers:
                await trio.sleep(0.01)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                with pytest.raises(SandboxGone, match=re.escape(cause)):
                    await session.exec("sleep 30", timeout=30)

            nursery.start_soon(call)
            await trio.sleep(0.2)
            for kind, detail in events:
                fake_backend.emit(SandboxEvent(session.sandbox_id, kind, detail))  # type: ignore[arg-type]
        assert trio.current_time() - started < 1.5
        assert session.state == state and cause in (session.failure or "")
        # Another sandbox's events change nothing here.
        other = await orch.open_session()
        fake_backend.emit(SandboxEvent("someone-else", "died", "exit code 1"))
        assert (await other.exec("echo fine")).stdout == b"fine\n"
        await session.close()
