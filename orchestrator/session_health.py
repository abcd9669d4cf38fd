"""How a session notices it lost its sandbox: the stream ended, or the guest went silent.

Anything the guest sends counts as life.  A channel quiet for ``interval``
is pinged; a ping unanswered within ``timeout`` means the guest has stopped
serving (stopped, stuck, starved).  The heartbeat is not a call of the
session's, so it never keeps a session from idling out.

Must not: act on what it finds (the session does), or hold the channel's locks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import trio

from orchestrator import protocol
from orchestrator.backends.base import SandboxEvent
from orchestrator.channel import GuestChannel
from orchestrator.errors import SandboxGone, SbxError

__all__ = ["LostSandbox", "RootWatch", "SandboxHealth", "wait_until_lost"]

ENGINE_GRACE = 0.5
"""After the stream ends, how long to wait for the engine's word on why."""

LostSandbox = tuple[Literal["broken", "crashed"], str]
"""The state a session turns to, and the cause in words."""


async def wait_until_lost(channel: GuestChannel, *, interval: float, timeout: float) -> LostSandbox:
    """Return once the sandbox behind ``channel`` is lost: ``crashed`` or ``broken``, and why."""
    while True:
        with trio.move_on_after(interval):
            await channel.closed_event.wait()
        if channel.closed:
            return "crashed", f"its sandbox stopped ({channel.close_cause})"
        if trio.current_time() - channel.last_received < interval:
            continue
        with trio.move_on_after(timeout) as scope:
            try:
                # Straight on the channel, not through GuestClient: a heartbeat is not a
                # call of the session's, and counted as one it would keep an idle session
                # from ever expiring (session.idle_timeout).
                await channel.call(protocol.OP_PING, {})
            except SandboxGone:
                continue  # the channel closed: reported on the next turn
            except SbxError:
                pass  # an answer, even an error, is a sign of life
        if scope.cancelled_caught:
            return "broken", f"its guest has not answered for {timeout:g} s (stopped, or stuck)"


class SandboxHealth:
    """One session's verdict on its sandbox, from engine events and from its channel."""

    def __init__(self) -> None:
        self._news = trio.Event()
        self._verdict: LostSandbox | None = None
        self._whole_oom = False

    def notice(self, event: SandboxEvent) -> None:
        """An engine event about this sandbox (an ``oom`` is followed by its ``died``)."""
        if self._verdict is not None:
            return
        if event.kind == "oom":
            self._whole_oom = True
            return
        if event.kind == "died":
            self._verdict = (
                "crashed",
                "its sandbox ran out of memory as a whole and was killed"
                if self._whole_oom
                else f"its sandbox stopped ({event.detail or 'it exited'})",
            )
        elif event.kind == "paused":
            self._verdict = ("broken", "its sandbox was paused from outside")
        else:
            self._verdict = ("crashed", "its sandbox was removed from outside")
        self._news.set()

    async def wait(
        self,
        channel: GuestChannel,
        *,
        interval: float,
        timeout: float,
        root: RootWatch | None = None,
    ) -> LostSandbox:
        """Return once the sandbox is lost, by whichever sign comes first (with ``root``:
        also once its writable root holds more than allowed)."""
        verdicts: list[LostSandbox] = []
        async with trio.open_nursery() as nursery:
            if root is not None:

                async def from_disk() -> None:
                    verdicts.append(await root.wait_until_over())
                    nursery.cancel_scope.cancel()

                nursery.start_soon(from_disk)

            async def from_channel() -> None:
                verdict = await wait_until_lost(channel, interval=interval, timeout=timeout)
                if verdict[0] == "crashed":
                    # The stream ended: the engine usually says why a moment later.
                    with trio.move_on_after(ENGINE_GRACE):
                        await self._news.wait()
                    if self._verdict is not None:
                        verdict = self._verdict
                verdicts.append(verdict)
                nursery.cancel_scope.cancel()

            async def from_engine() -> None:
                await self._news.wait()
                assert self._verdict is not None
                verdicts.append(self._verdict)
                nursery.cancel_scope.cancel()

            nursery.start_soon(from_channel)
            nursery.start_soon(from_engine)
        return verdicts[0]


@dataclass(frozen=True)
class RootWatch:
    """A writable root's size, checked every ``interval`` against ``limit`` (the engine here
    cannot cap it itself): hostile code may write past it for at most one interval."""

    usage: Callable[[], Awaitable[int | None]]
    limit: int
    interval: float

    async def wait_until_over(self) -> LostSandbox:
        while True:
            await trio.sleep(self.interval)
            try:
                used = await self.usage()
            except SbxError:
                continue  # the engine is busy or the sandbox is going: not a verdict
            if used is not None and used > self.limit:
                return (
                    "broken",
                    f"it wrote {used >> 20} MiB to its root filesystem, over sandbox.root_size "
                    f"({self.limit >> 20} MiB)",
                )
