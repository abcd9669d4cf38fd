"""How a session notices it lost its sandbox: the stream ended, or the guest went silent.

Anything the guest sends counts as life.  A channel quiet for ``interval``
is pinged; a ping unanswered within ``timeout`` means the guest has stopped
serving (stopped, stuck, starved).  The heartbeat is not a call of the
session's, so it never keeps a session from idling out.

Must not: act on what it finds (the session does), or hold the channel's locks.
"""

from __future__ import annotations

from typing import Literal

import trio

from orchestrator import protocol
from orchestrator.channel import GuestChannel
from orchestrator.errors import SandboxGone, SbxError

__all__ = ["LostSandbox", "wait_until_lost"]

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
                await channel.call(protocol.OP_PING, {})
            except SandboxGone:
                continue  # the channel closed: reported on the next turn
            except SbxError:
                pass  # an answer, even an error, is a sign of life
        if scope.cancelled_caught:
            return "broken", f"its guest has not answered for {timeout:g} s (stopped, or stuck)"
