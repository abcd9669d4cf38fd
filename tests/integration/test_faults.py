"""Faults injected from outside, on the real engine: each is noticed within a second, reported
with its cause to the calls in flight, and leaves nothing behind."""

from __future__ import annotations

import docker
import pytest
import trio

from orchestrator import Orchestrator
from orchestrator.errors import SandboxGone

from .conftest import IMAGE


@pytest.mark.parametrize(
    ("fault", "state", "cause"),
    [
        ("kill", "crashed", "its sandbox stopped (exit code 137)"),
        ("remove", "crashed", "its sandbox"),  # killed, then removed: whichever the engine says
        ("pause", "broken", "its sandbox was paused from outside"),
    ],
)
async def test_a_sandbox_killed_removed_or_paused_from_outside_is_noticed_within_a_second(
    orch: Orchestrator, docker_client: docker.DockerClient, fault: str, state: str, cause: str
) -> None:
    session = await orch.open_session(image=IMAGE, memories=False)
    assert session.sandbox_id is not None
    container = docker_client.containers.get(session.sandbox_id)
    await trio.sleep(0.5)  # the engine's event stream is up
    elapsed: list[float] = []

    async def call() -> None:
        started = trio.current_time()
        with pytest.raises(SandboxGone) as info:
            await session.exec("sleep 60", timeout=60)
        elapsed.append(trio.current_time() - started)
        assert session.state in ("broken", "crashed")
        assert "open a new session" in str(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.sleep(0.5)
        injected = trio.current_time()
        action = {
            "kill": container.kill,
            "remove": lambda: container.remove(force=True),
            "pause": container.pause,
        }[fault]
        await trio.to_thread.run_sync(action)
    assert trio.current_time() - injected < 1.5, "not noticed within a second"
    assert session.state == state, session.failure
    assert cause in (session.failure or ""), session.failure
    await session.close()
    with trio.fail_after(20):
        while docker_client.api.containers(all=True, filters={"id": session.sandbox_id}):
            await trio.sleep(0.2)
    async with orch.session(image=IMAGE, memories=False) as fresh:
        assert (await fresh.exec("echo next")).stdout == b"next\n"
