"""Per-session resource locks: fair reader-writer locks keyed by resource name.

Exclusive holders (a shell command, a click, a file edit) run one at a time
in arrival order; shared holders (reading a file, a screenshot) overlap each
other but never an exclusive holder.  Arrival order is strict FIFO, so a
stream of readers cannot starve a writer.  A call holds exactly one of these
at a time and they never span sessions, which is half of why the router
cannot deadlock; the other half is that calls in a batch only ever wait for
*earlier* calls.  Cancellation cannot strand a lock either: an acquisition
that is cancelled either never took the lock or gives it back before the
``Cancelled`` propagates (see ``_RWLock.acquire``).
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

__all__ = ["ResourceLocks"]


@dataclass
class _Waiter:
    shared: bool
    granted: trio.Event = field(default_factory=trio.Event)


class _RWLock:
    def __init__(self) -> None:
        self.readers = 0
        self.writer = False
        self.queue: collections.deque[_Waiter] = collections.deque()

    @property
    def idle(self) -> bool:
        return not self.readers and not self.writer and not self.queue

    def _can_grant(self, shared: bool) -> bool:
        return not self.writer and (shared or self.readers == 0)

    def _take(self, shared: bool) -> None:
        if shared:
            self.readers += 1
        else:
            self.writer = True

    async def acquire(self, shared: bool) -> None:
        """Take the lock, or raise ``Cancelled`` without holding it.

        The order is trio's own ``Lock.acquire``: a pending cancel is honoured
        *before* anything is taken, and the checkpoint after the take is
        shielded, so no cancel can land between taking the lock and handing
        it to the ``try``/``finally`` that gives it back.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.queue and self._can_grant(shared):
            self._take(shared)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(shared)
        self.queue.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.release(shared)  # granted and cancelled in the same instant
            else:
                self.queue.remove(waiter)
                self._wake()
            raise

    def release(self, shared: bool) -> None:
        if shared:
            self.readers -= 1
        else:
            self.writer = False
        self._wake()

    def _wake(self) -> None:
        while self.queue and self._can_grant(self.queue[0].shared):
            waiter = self.queue.popleft()
            self._take(waiter.shared)
            waiter.granted.set()


class ResourceLocks:
    """One session's locks, created on first use and dropped when idle."""

    def __init__(self) -> None:
        self._locks: dict[str, _RWLock] = {}

    @asynccontextmanager
    async def hold(self, key: str, *, shared: bool = False) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = _RWLock()
        try:
            await lock.acquire(shared)
        except BaseException:
            self._forget_if_idle(key, lock)
            raise
        try:
            yield
        finally:
            lock.release(shared)
            self._forget_if_idle(key, lock)

    def _forget_if_idle(self, key: str, lock: _RWLock) -> None:
        if lock.idle and self._locks.get(key) is lock:
            del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
