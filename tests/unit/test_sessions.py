"""Session lifecycle, expiry, cancellation, shutdown and orphan reaping (fake backend)."""

from __future__ import annotations

import pytest
import structlog
import trio

from orchestrator import (
    Config,
    FakeBackend,
    ImageNotFound,
    Orchestrator,
    SandboxStartError,
    SessionClosed,
    SessionError,
)
from orchestrator.backends.base import LABEL_MANAGED, LABEL_OWNER, LABEL_SUPERVISOR
from orchestrator.supervisor import process_identity, supervisor_alive


def _live(backend: FakeBackend) -> list[str]:
    return [box_id for box_id, box in backend.sandboxes.items() if not backend._gone(box)]


async def test_closing_a_session_removes_its_sandbox(orch: Orchestrator, fake_backend) -> None:
    async with orch.session() as s:
        assert s.state == "ready"
        assert _live(fake_backend) == [s.sandbox_id]
        assert len(s.id) == 12
    assert s.state == "closed"
    assert _live(fake_backend) == []
    assert orch.sessions == []
    with pytest.raises(SessionClosed, match="open a new session"):
        await s.exec("true")


async def test_attach_happens_before_start(orch: Orchestrator, fake_backend) -> None:
    async with orch.session() as s:
        events = fake_backend.sandboxes[s.sandbox_id].events
    assert events[:3] == ["create", "attach", "start"]


async def test_hardening_labels_are_on_every_sandbox(orch: Orchestrator, fake_backend) -> None:
    async with orch.session(labels={"team": "eval"}) as s:
        labels = fake_backend.sandboxes[s.sandbox_id].info.labels
    assert labels["io.sbx.session"] == s.id
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_OWNER] == "local"
    assert labels[LABEL_SUPERVISOR] == process_identity()
    assert float(labels["io.sbx.expires"]) > 0
    assert labels["team"] == "eval"


async def test_closing_cancels_calls_in_flight(orch: Orchestrator) -> None:
    s = await orch.open_session()
    outcome: list[BaseException] = []

    async def long_call() -> None:
        try:
            await s.exec("sleep 300")
        except SessionClosed as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_call)
        await trio.sleep(0.3)
        with trio.fail_after(10):
            await s.close()
    assert len(outcome) == 1
    assert "closed" in str(outcome[0])


async def test_idle_timeout_closes_an_unused_session(orch: Orchestrator) -> None:
    s = await orch.open_session(idle_timeout=0.3)
    await s.exec("true")
    with trio.fail_after(5):
        while s.state != "closed":
            await trio.sleep(0.05)
    assert s.close_reason == "idle timeout"


async def test_a_call_in_flight_keeps_the_session_from_idling_out(orch: Orchestrator) -> None:
    s = await orch.open_session(idle_timeout=0.3)
    r = await s.exec("sleep 1; echo done")
    assert r.stdout == b"done\n"
    assert s.state == "ready"
    await s.close()


async def test_ttl_closes_even_a_busy_session(orch: Orchestrator) -> None:
    s = await orch.open_session(ttl=0.5)
    with pytest.raises(SessionClosed, match="ttl expired"):
        await s.exec("sleep 30")
    assert s.close_reason == "ttl expired"


async def test_leaving_the_orchestrator_removes_every_sandbox(
    fake_config: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(fake_config, backend=fake_backend) as orch:
        sessions = [await orch.open_session() for _ in range(3)]
        assert len(_live(fake_backend)) == 3
    assert _live(fake_backend) == []
    assert all(s.state == "closed" for s in sessions)


async def test_an_error_in_the_callers_block_still_cleans_up(
    fake_config: Config, fake_backend: FakeBackend
) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with Orchestrator(fake_config, backend=fake_backend) as orch:
            await orch.open_session()
            raise RuntimeError("boom")
    assert _live(fake_backend) == []


async def test_unknown_image_says_how_to_build_it(orch: Orchestrator, fake_backend) -> None:
    with pytest.raises(ImageNotFound, match="sbx images build"):
        await orch.open_session(image="sbx-nope")
    assert _live(fake_backend) == []
    assert orch.sessions == []


async def test_a_failed_start_leaves_nothing_and_the_next_session_works(
    orch: Orchestrator, fake_backend: FakeBackend
) -> None:
    fake_backend.fail_next_start = "engine said no"
    with pytest.raises(SandboxStartError, match="engine said no"):
        await orch.open_session()
    assert orch.sessions == []
    async with orch.session() as s:
        assert (await s.exec("echo ok")).stdout == b"ok\n"


async def test_session_limit_is_enforced_with_a_clear_error(
    fake_config: Config, fake_backend: FakeBackend
) -> None:
    fake_config.session.max_sessions = 2
    async with Orchestrator(fake_config, backend=fake_backend) as orch:
        await orch.open_session()
        await orch.open_session()
        with pytest.raises(SessionError, match="max_sessions"):
            await orch.open_session()


async def test_twenty_sessions_in_parallel(orch: Orchestrator, fake_backend) -> None:
    outputs: dict[int, bytes] = {}

    async def job(i: int) -> None:
        async with orch.session() as s:
            outputs[i] = (await s.exec(f"echo {i}")).stdout

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(job, i)
    assert outputs == {i: f"{i}\n".encode() for i in range(20)}
    assert _live(fake_backend) == []


async def test_every_log_line_of_a_session_carries_its_id(orch: Orchestrator) -> None:
    with structlog.testing.capture_logs() as logs:
        async with orch.session() as s:
            await s.exec("true")
    mine = [line for line in logs if line.get("event") in ("session ready", "session closed")]
    assert len(mine) == 2
    assert all(line.get("session_id") == s.id for line in mine)


async def test_reaper_removes_sandboxes_of_dead_supervisors_only(
    fake_config: Config, fake_backend: FakeBackend
) -> None:
    base = {LABEL_MANAGED: "true", LABEL_OWNER: "local"}
    host, pid, _ = process_identity().split(":")
    dead = fake_backend.add_orphan({**base, LABEL_SUPERVISOR: f"{host}:{pid}:1"})
    alive_here = fake_backend.add_orphan({**base, LABEL_SUPERVISOR: process_identity()})
    other_host = fake_backend.add_orphan({**base, LABEL_SUPERVISOR: "elsewhere:1:1"})
    expired_elsewhere = fake_backend.add_orphan(
        {**base, LABEL_SUPERVISOR: "elsewhere:1:1", "io.sbx.expires": "1"}
    )
    other_owner = fake_backend.add_orphan({LABEL_MANAGED: "true", LABEL_OWNER: "ci"})
    async with Orchestrator(fake_config, backend=fake_backend) as orch:
        # The sweep runs beside the first sessions; it is done when `reaped` is set.
        with trio.fail_after(10):
            await orch.supervisor.reaped.wait()
        live = set(_live(fake_backend))
    assert dead not in live
    assert expired_elsewhere not in live
    assert {other_host, other_owner} <= live
    # Our own identity counts as a live supervisor, so a second orchestrator in the
    # same process leaves the first one's sandboxes alone.
    assert supervisor_alive(process_identity()) is True
    assert alive_here in live


def test_supervisor_liveness_is_unknown_for_other_hosts() -> None:
    assert supervisor_alive("some-other-host:1:1") is None
    host, pid, _ = process_identity().split(":")
    assert supervisor_alive(f"{host}:{pid}:999999999") is False
