"""Resource locks: FIFO fairness, shared holders, and no lock stranded by a cancel."""

from __future__ import annotations

import trio
import trio.testing

from orchestrator.locks import ResourceLocks


async def _next_holder_gets_in(locks: ResourceLocks, key: str) -> None:
    """The lock is free: a fresh exclusive holder takes it at once."""
    with trio.fail_after(1):
        async with locks.hold(key):
            pass
    assert len(locks) == 0, "an idle lock is forgotten"


async def test_a_cancel_pending_at_acquisition_takes_nothing() -> None:
    # The cancel is delivered at the first checkpoint of the acquisition: the one
    # right after the fast path would take the free lock.
    locks = ResourceLocks()
    entered = False
    with trio.CancelScope() as scope:
        scope.cancel()
        async with locks.hold("shell"):
            entered = True
    assert scope.cancelled_caught and not entered
    await _next_holder_gets_in(locks, "shell")


async def test_a_cancel_pending_at_a_shared_acquisition_takes_nothing() -> None:
    locks = ResourceLocks()
    with trio.CancelScope() as scope:
        scope.cancel()
        async with locks.hold("file", shared=True):
            raise AssertionError("a cancelled acquisition must not enter")
    assert scope.cancelled_caught
    await _next_holder_gets_in(locks, "file")


async def test_a_cancel_while_queued_leaves_the_queue() -> None:
    locks = ResourceLocks()
    order: list[str] = []
    release = trio.Event()

    async def holder() -> None:
        async with locks.hold("display"):
            order.append("holder")
            await release.wait()

    async def queued(scope: trio.CancelScope) -> None:
        with scope:
            async with locks.hold("display"):
                order.append("queued")

    async def later() -> None:
        async with locks.hold("display"):
            order.append("later")

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(queued, scope)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(later)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert order == ["holder", "later"]
    await _next_holder_gets_in(locks, "display")


async def test_granted_and_cancelled_in_the_same_instant_gives_the_lock_back() -> None:
    locks = ResourceLocks()
    entered: list[str] = []
    release = trio.Event()
    scope = trio.CancelScope()

    async def holder() -> None:
        async with locks.hold("interpreter"):
            await release.wait()

    async def waiter() -> None:
        with scope:
            async with locks.hold("interpreter"):
                entered.append("waiter")
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        # Wake the holder and, before the waiter it hands the lock to can run, cancel it.
        release.set()
        scope.cancel()
    assert scope.cancelled_caught
    await _next_holder_gets_in(locks, "interpreter")


async def test_writers_wait_for_readers_and_readers_behind_a_writer_wait_too() -> None:
    locks = ResourceLocks()
    log: list[str] = []
    gates = {name: trio.Event() for name in ("r1", "w", "r2")}

    async def hold(name: str, shared: bool) -> None:
        async with locks.hold("file", shared=shared):
            log.append(f"+{name}")
            await gates[name].wait()
            log.append(f"-{name}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, "r1", True)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(hold, "w", False)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(hold, "r2", True)
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["+r1"], "a reader arriving behind a queued writer must not overtake it"
        gates["r1"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["+r1", "-r1", "+w"]
        gates["w"].set()
        gates["r2"].set()
    assert log == ["+r1", "-r1", "+w", "-w", "+r2", "-r2"]
    assert len(locks) == 0
