"""The heartbeat raises no false alarm when the machine is busy: 200 sandboxes, every one of
them running commands flat out on this 2-core machine, and none turns ``broken``.

A heartbeat that pings a quiet channel and waits ``session.heartbeat_timeout`` (10 s) must
tell a starved guest from a stopped one; this is the load at which a tighter design would
start calling healthy sessions dead.
"""

from __future__ import annotations

import docker
import pytest
import trio

from orchestrator import Config, Orchestrator, Session

from .conftest import containers_of_session

SESSIONS = 200
BUSY_FOR = 45.0
"""Seconds of load: several heartbeat periods (2 s) and timeouts (10 s)."""

SPIN = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i"


@pytest.mark.soak
async def test_two_hundred_busy_sessions_raise_no_false_alarm(
    config: Config, docker_client: docker.DockerClient
) -> None:
    config.session.idle_timeout = 600
    async with Orchestrator(config) as orch:
        sessions: list[Session] = []
        limit = trio.CapacityLimiter(8)  # the engine creates containers one by one anyway

        async def open_one() -> None:
            async with limit:
                sessions.append(await orch.open_session(image="base", memories=False))

        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                for _ in range(SESSIONS):
                    nursery.start_soon(open_one)
        calls = [0] * SESSIONS
        try:

            async def keep_busy(index: int, session: Session) -> None:
                deadline = trio.current_time() + BUSY_FOR
                while trio.current_time() < deadline:
                    result = await session.exec(["sh", "-c", SPIN], timeout=120)
                    assert result.stdout == b"20000\n", result
                    calls[index] += 1

            with trio.fail_after(BUSY_FOR + 300):
                async with trio.open_nursery() as nursery:
                    for index, session in enumerate(sessions):
                        nursery.start_soon(keep_busy, index, session)
            states = {s.state for s in sessions}
            assert states == {"ready"}, [(s.id, s.state, s.failure) for s in sessions]
            assert all(count >= 1 for count in calls), calls
        finally:
            with trio.fail_after(300):
                async with trio.open_nursery() as nursery:
                    for session in sessions:
                        nursery.start_soon(session.close)
        for session in sessions:
            assert containers_of_session(docker_client, session.id) == []
