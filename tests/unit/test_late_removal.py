"""A sandbox removal that misses its deadline is said, counted and retried until it is gone.

The backend is the fake one with a removal that hangs the first times it is
asked (as an engine tearing down a runtime with many processes does), so the
session's shielded teardown runs out of time for real.
"""

from __future__ import annotations

import pytest
import structlog
import trio
import trio.testing

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.metrics import PrometheusObserver


class _SlowRemovals(FakeBackend):
    """Removal hangs (longer than any deadline here) for the first ``hangs`` calls."""

    def __init__(self, hangs: int) -> None:
        super().__init__()
        self.hangs = hangs
        self.remove_calls = 0

    async def remove(self, sandbox_id: str) -> None:
        self.remove_calls += 1
        if self.remove_calls <= self.hangs:
            await trio.sleep(3600)
        await super().remove(sandbox_id)


@pytest.fixture
def quick_teardown(fake_config: Config) -> Config:
    fake_config.shutdown_timeout = 0.5
    return fake_config


async def test_a_removal_past_its_deadline_is_logged_counted_and_retried_until_gone(
    quick_teardown: Config,
) -> None:
    backend = _SlowRemovals(hangs=2)
    observer = PrometheusObserver(lambda: 0)
    async with Orchestrator(quick_teardown, backend=backend, observer=observer) as orch:
        late = orch.supervisor.late_removals
        late.first_pause = 0.05
        late.attempt_timeout = 0.5
        session = await orch.open_session()
        sandbox_id = session.sandbox_id
        assert sandbox_id is not None
        with structlog.testing.capture_logs() as logs:
            with trio.fail_after(5):
                await session.close()
            # The session's close kept its deadline and said why the sandbox is still there.
            assert session.state == "closed"
            assert sandbox_id in late.pending
            missed = [e for e in logs if "missed its deadline" in e["event"]]
            assert missed and "shutdown_timeout (0.5 s)" in missed[0]["reason"]
            assert observer.late_removals._value.get() == 1
            with trio.fail_after(10):
                while sandbox_id in late.pending:
                    await trio.sleep(0.05)
        assert backend.remove_calls >= 3  # the session's try, one retry that hung, the last
        assert late.removed == 1
        assert await backend.list({"io.sbx.session": session.id}) == []
        assert any(e["event"] == "late sandbox removal done" for e in logs)


async def test_removals_still_pending_at_shutdown_are_left_to_the_reaper_by_name(
    quick_teardown: Config,
) -> None:
    backend = _SlowRemovals(hangs=100)
    with structlog.testing.capture_logs() as logs:
        async with Orchestrator(quick_teardown, backend=backend) as orch:
            late = orch.supervisor.late_removals
            late.first_pause = 0.05
            late.attempt_timeout = 0.2
            session = await orch.open_session()
            sandbox_id = session.sandbox_id
            assert sandbox_id is not None
            with trio.fail_after(5):
                await session.close()
    # The orchestrator's shutdown stayed bounded and named what it left to the reaper.
    left = [e for e in logs if "still being removed at shutdown" in e["event"]]
    assert left and left[0]["sandboxes"] == [sandbox_id[:12]]


async def test_a_removal_in_time_hands_nothing_over(fake_config: Config) -> None:
    observer = PrometheusObserver(lambda: 0)
    async with Orchestrator(fake_config, backend=FakeBackend(), observer=observer) as orch:
        session = await orch.open_session()
        await session.close()
        assert orch.supervisor.late_removals.pending == {}
        assert observer.late_removals._value.get() == 0


class _GatedRetries(FakeBackend):
    """The session's removal hangs; every later one waits for ``gate`` and then works."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.remove_calls = 0

    async def remove(self, sandbox_id: str) -> None:
        self.remove_calls += 1
        if self.remove_calls == 1:
            await trio.sleep(3600)
        await self.gate.wait()
        await super().remove(sandbox_id)


async def test_a_retry_in_flight_when_shutdown_drains_ends_once_and_drain_waits_for_it(
    quick_teardown: Config,
) -> None:
    # Shutdown's drain used to start a second removal of a sandbox whose background
    # retry was in flight; both succeeded and the second raised KeyError out of
    # the supervisor's shutdown (seen as a traceback at the end of `sbx run`).
    backend = _GatedRetries()
    async with Orchestrator(quick_teardown, backend=backend) as orch:
        late = orch.supervisor.late_removals
        late.first_pause = 0.0
        late.attempt_timeout = 30
        session = await orch.open_session()
        sandbox_id = session.sandbox_id
        assert sandbox_id is not None
        with trio.fail_after(5):
            await session.close()
            while backend.remove_calls < 2:  # the background retry is now in flight
                await trio.sleep(0.01)
        drained = False

        async def drain() -> None:
            nonlocal drained
            await late.drain(10)
            drained = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert not drained, "drain must wait for the retry in flight"
            backend.gate.set()
        assert drained
        assert late.pending == {}
        assert late.removed == 1
        assert backend.remove_calls == 2
