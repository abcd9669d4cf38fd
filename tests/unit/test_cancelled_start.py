"""A session cancelled while the engine is making its sandbox leaves no sandbox behind.

The engine makes a container even when the caller stops waiting for the answer
(Ctrl-C on ``sbx eval``, a supervisor closing every session), so a create that
is simply abandoned leaves a container whose id nobody ever learns.  The fake
backend here makes the sandbox, then holds its answer until the test lets it go.
"""

from __future__ import annotations

import pytest
import trio

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.backends.base import SandboxInfo, SandboxSpec
from orchestrator.errors import SandboxStartError


class _SlowAnswers(FakeBackend):
    """``create`` makes the sandbox at once and answers only when ``answer`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.made = trio.Event()
        self.answer = trio.Event()

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        info = await super().create(spec)
        self.made.set()
        await self.answer.wait()
        return info


async def test_a_cancel_during_create_waits_for_the_answer_and_removes_the_sandbox(
    fake_config: Config,
) -> None:
    backend = _SlowAnswers()
    async with Orchestrator(fake_config, backend=backend) as orch:
        scope = trio.CancelScope()

        async def open_one() -> None:
            with scope:
                await orch.open_session()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_one)
            await backend.made.wait()
            scope.cancel()
            await trio.sleep(0.2)  # the cancel is in; only now does the engine answer
            backend.answer.set()
        assert scope.cancelled_caught
        with trio.fail_after(5):
            while await backend.list({}):
                await trio.sleep(0.01)
        assert [box.events[-1] for box in backend.sandboxes.values()] == ["remove"]
        assert orch.supervisor.sessions == {}


async def test_a_create_that_never_answers_still_ends_at_the_start_deadline(
    fake_config: Config,
) -> None:
    """The wait for the answer is bounded: an engine that hangs costs a cancelled caller
    no more than ``sandbox.start_timeout``, and says so (what it made is the reaper's)."""
    fake_config.sandbox.start_timeout = 0.3
    backend = _SlowAnswers()
    async with Orchestrator(fake_config, backend=backend) as orch:
        scope = trio.CancelScope()

        async def open_one() -> None:
            with scope, pytest.raises(SandboxStartError, match=r"not ready within 0\.3 s"):
                await orch.open_session()

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(open_one)
                await backend.made.wait()
                scope.cancel()
