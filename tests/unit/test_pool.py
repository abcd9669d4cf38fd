"""Spare sandboxes: kept started, handed to matching sessions, replaced, never leaked."""

from __future__ import annotations

import time

import pytest
import trio

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.options import SandboxOptions
from orchestrator.sandbox_spec import sandbox_key


def _live(backend: FakeBackend) -> set[str]:
    return {box_id for box_id, box in backend.sandboxes.items() if not backend._gone(box)}


async def _wait_for_spares(orch: Orchestrator, count: int) -> None:
    with trio.fail_after(20):
        while len(orch.supervisor.pool.spares()) < count:
            await trio.sleep(0.01)


@pytest.fixture
def pool_config(fake_config: Config) -> Config:
    fake_config.pool.size = 2
    fake_config.pool.images = ["code-runner"]
    return fake_config


async def test_a_matching_session_adopts_a_started_spare_and_the_pool_refills(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await _wait_for_spares(orch, 2)
        spare_boxes = {s.sandbox_id for s in orch.supervisor.pool.spares()}
        assert orch.sessions == []  # spares are not anybody's sessions
        before = len(fake_backend.sandboxes)
        session = await orch.open_session("code-runner", owner="alice", memories=False, ttl=60)
        try:
            assert session.sandbox_id in spare_boxes
            assert session.owner == "alice"
            assert session.ttl == 60
            assert time.time() - session.created_at < 5
            assert orch.sessions == [session]
            assert orch.supervisor.pool.handed_out == 1
            assert (await session.exec("echo adopted")).stdout == b"adopted\n"
            await _wait_for_spares(orch, 2)
            assert len(fake_backend.sandboxes) == before + 1  # one made to replace it
        finally:
            await session.close()
    assert _live(fake_backend) == set()


async def test_sessions_that_need_another_sandbox_start_their_own(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await _wait_for_spares(orch, 2)
        spare_boxes = {s.sandbox_id for s in orch.supervisor.pool.spares()}
        for options in (
            {"memories": False, "env": {"A": "1"}},
            {"memories": False, "labels": {"team": "x"}},
            {"memories": False, "cpus": 0.5},
            {},  # the memory store is mounted by default, per owner
        ):
            async with orch.session("code-runner", **options) as s:
                assert s.sandbox_id not in spare_boxes, options
        assert orch.supervisor.pool.handed_out == 0


async def test_shutdown_removes_the_spares_too(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await _wait_for_spares(orch, 2)
        assert len(_live(fake_backend)) == 2
    assert _live(fake_backend) == set()


async def test_an_unused_spare_is_replaced_after_max_age(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    pool_config.pool.size = 1
    pool_config.pool.max_age = 0.5
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await _wait_for_spares(orch, 1)
        first = orch.supervisor.pool.spares()[0]
        with trio.fail_after(20):
            while first.state != "closed":
                await trio.sleep(0.05)
        assert first.close_reason == "spare unused for pool.max_age"
        await _wait_for_spares(orch, 1)
        assert orch.supervisor.pool.spares()[0] is not first


async def test_an_adopted_spare_keeps_its_own_clocks(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    pool_config.pool.size = 1
    pool_config.pool.max_age = 0.4
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await _wait_for_spares(orch, 1)
        session = await orch.open_session("code-runner", memories=False, idle_timeout=30)
        await trio.sleep(0.8)  # past the pool's max_age: no longer a spare, so it stays
        assert session.state == "ready"
        await session.close()


async def test_a_spare_that_cannot_start_is_retried_later_without_harm(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    pool_config.pool.images = ["no-such-image"]
    pool_config.pool.retry_after = 60
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await trio.sleep(0.3)
        assert orch.supervisor.pool.spares() == []
        async with orch.session("code-runner", memories=False) as s:  # the supervisor is fine
            assert (await s.exec("true")).exit_code == 0
    assert _live(fake_backend) == set()


def test_the_key_names_the_sandbox_not_the_spelling(fake_config: Config) -> None:
    short = sandbox_key(SandboxOptions(image="code-runner", memories=False), fake_config)
    full = sandbox_key(
        SandboxOptions(
            image="sbx-code-runner",
            memories=False,
            cpus=fake_config.sandbox.cpus,
            network=fake_config.sandbox.network,
            ttl=5,
        ),
        fake_config,
    )
    assert short is not None and short == full
    assert sandbox_key(SandboxOptions(image="desktop", memories=False), fake_config) != short
    with_store = sandbox_key(SandboxOptions(image="code-runner"), fake_config)  # store on
    assert with_store is not None and with_store != short
    # The store is mounted by owner and namespace: other owners' sessions differ.
    assert sandbox_key(SandboxOptions(image="code-runner"), fake_config, "alice") != with_store
    assert (
        sandbox_key(SandboxOptions(image="code-runner", memory_namespace="x"), fake_config)
        != with_store
    )
    assert sandbox_key(SandboxOptions(image="code-runner", labels={"a": "b"}), fake_config) is None


async def test_spares_with_the_memory_store_serve_default_local_sessions_only(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    pool_config.pool.size = 1
    pool_config.pool.memories = True
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await _wait_for_spares(orch, 1)
        spare = orch.supervisor.pool.spares()[0]
        async with orch.session("code-runner") as s:  # default options: the store is on
            assert s is spare
            assert s.memory_namespace == pool_config.memory.namespace
        await _wait_for_spares(orch, 1)
        refilled = orch.supervisor.pool.spares()[0]
        assert refilled.memory_namespace == pool_config.memory.namespace
        alice = await orch.open_session("code-runner", owner="alice")
        try:
            assert orch.supervisor.pool.handed_out == 1  # alice's store differs: no spare
        finally:
            await alice.close()


async def test_spares_and_adoptions_are_in_the_metrics(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    from orchestrator.metrics import PrometheusObserver

    holder: list[Orchestrator] = []
    observer = PrometheusObserver(
        lambda: len(holder[0].sessions), spares=lambda: len(holder[0].supervisor.pool.spares())
    )
    async with Orchestrator(pool_config, backend=fake_backend, observer=observer) as orch:
        holder.append(orch)
        await _wait_for_spares(orch, 2)
        assert "sbx_pool_spares 2.0" in observer.render().decode()
        async with orch.session("code-runner", memories=False):
            text = observer.render().decode()
        assert 'sbx_sessions_from_spares_total{image="sbx-code-runner"} 1.0' in text


async def test_a_spare_whose_sandbox_died_is_never_handed_out(
    pool_config: Config, fake_backend: FakeBackend
) -> None:
    pool_config.pool.size = 1
    async with Orchestrator(pool_config, backend=fake_backend) as orch:
        await _wait_for_spares(orch, 1)
        dead = orch.supervisor.pool.spares()[0]
        await fake_backend.stop(dead.sandbox_id or "")
        with trio.fail_after(10):
            while dead.alive:
                await trio.sleep(0.01)
        async with orch.session("code-runner", memories=False) as s:
            assert s is not dead
            assert (await s.exec("echo fine")).stdout == b"fine\n"
        with trio.fail_after(10):
            while not dead.closed:
                await trio.sleep(0.01)
    assert _live(fake_backend) == set()
