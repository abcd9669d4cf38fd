"""The lifecycle every call that answers later shares: the base class ``RunningCall``.

A command, a shell command, an interpreter run, a forwarded connection and
a desktop action all outlive the request that starts them.  The guest keeps
each by id until it answers, hands it the host's ``cancel`` and ``win``
frames, and kills it at shutdown; this base holds what they all do the same
way, so each kind says only what is its own (through the ``_`` hooks):

- state: when it started, why it was stopped (``reason``: ``"timeout"``,
  ``"cancel"`` or ``"shutdown"``), whether it has answered (``finished``),
  and its timers, all cancelled when it answers;
- memory: the cgroup's OOM-kill counter at the start, so the answer can say
  whether the OOM killer struck meanwhile (``oom_struck``);
- stopping: ``stop`` interrupts the work at once and forces it after the
  grace period unless the work ended meanwhile (TERM then KILL; SIGINT then
  a new interpreter); ``kill_now``, at guest shutdown, forces it at once;
- flow control: ``grant`` passes the host's credit to the call's output sink;
- answering exactly once: ``answer``, ``fail``, or ``_end`` then ``_reply``
  for a call that builds its own frame; whatever comes after the first
  answer is dropped, so a late exit or a cancel racing the end is harmless.

Must not: know what the work is (a process tree, a socket, the X server),
start a process, or block.
"""

from __future__ import annotations

import time

from . import protocol
from .pipes import OutputSink
from .proctree import oom_kill_count

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Callable, Dict, List, Optional

    from .loop import Loop, Timer

    Send = Callable[[bytes], None]


class RunningCall:
    """One call between its request and its answer."""

    grace = 2.0
    """Seconds between interrupting the work and forcing it (see ``stop``)."""

    def __init__(self, loop: Loop, call_id: int, send: Send, done: Callable[[int], None]) -> None:
        self.loop = loop
        self.call_id = call_id
        self._send = send
        self._done = done
        self.started = time.monotonic()
        self.oom_at_start = oom_kill_count()
        self.reason: Optional[str] = None  # "timeout" | "cancel" | "shutdown"
        self.finished = False
        self.timers: List[Timer] = []
        self.sink: Optional[OutputSink] = None

    def oom_struck(self) -> bool:
        """Whether the sandbox's OOM killer struck while this call ran, whichever process
        it took (a grandchild's death is the call's business too).  Calls that overlap
        may both report one kill: better told twice than not at all."""
        now = oom_kill_count()
        return self.oom_at_start is not None and now is not None and now > self.oom_at_start

    # -- set-up -------------------------------------------------------------------

    def _apply_limits(self, args: dict, defaults: dict) -> OutputSink:
        """The kill grace and the output sink (window, cap) of a call that streams output,
        from its arguments or the guest's defaults."""
        self.grace = float(args.get("grace", defaults.get("kill_grace", 2.0)))
        self.sink = OutputSink.for_call(self.call_id, self._send, args, defaults)
        self.sink.on_credit = self._resume
        return self.sink

    def _arm_timeout(self, args: dict) -> None:
        """``stop("timeout")`` after the call's ``timeout`` seconds, if it has one.

        Armed once the work has started: a call whose start fails has nothing to stop.
        """
        timeout = args.get("timeout")
        if timeout is not None:
            self.later(float(timeout), lambda: self.stop("timeout"))

    def later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """A timer of this call: cancelled when the call answers."""
        timer = self.loop.call_later(delay, callback)
        self.timers.append(timer)
        return timer

    # -- flow control -------------------------------------------------------------

    def grant(self, credit: int) -> None:
        """The host takes ``credit`` more bytes of output (a ``win`` frame)."""
        if self.sink is not None:
            self.sink.grant(credit)

    def _resume(self) -> None:
        """Hook: the sink had run out of credit and has some again; read on."""

    # -- stopping -------------------------------------------------------------------

    def cancel(self) -> None:
        """The host cancelled the call; it still answers, saying so."""
        self.stop("cancel")

    def stop(self, reason: str) -> None:
        """Interrupt the work now and force it after the grace period; once per call."""
        if self.finished or self.reason is not None or not self._working():
            return
        self.reason = reason
        self._interrupt()
        self.later(self.grace, self._grace_over)

    def _grace_over(self) -> None:
        if not self.finished and self._working():
            self._force()

    def kill_now(self) -> None:
        """Guest shutdown: no grace, and no answer (the host is gone or going)."""
        self.reason = self.reason or "shutdown"
        self._abandon()

    def _working(self) -> bool:
        """Hook: whether there is still work to stop (it may have ended before the answer)."""
        return True

    def _interrupt(self) -> None:
        """Hook: ask the work to stop (TERM, SIGINT)."""

    def _force(self) -> None:
        """Hook: make the work stop, the grace period being over (KILL)."""

    def _abandon(self) -> None:
        """Hook: stop the work at once for ``kill_now``."""

    # -- answering ------------------------------------------------------------------

    def _end(self) -> bool:
        """Mark the call answered, cancel its timers and let go of what it holds.

        False if it had already ended: the caller must not answer again.
        """
        if self.finished:
            return False
        self.finished = True
        for timer in self.timers:
            timer.cancel()
        self.timers = []
        self._release()
        return True

    def _release(self) -> None:
        """Hook: let go of the call's descriptors and watchers (its timers are done)."""

    def _reply(self, frame: bytes) -> None:
        """Send the call's one answer and forget the call (after ``_end``)."""
        self._send(frame)
        self._done(self.call_id)

    def answer(self, value: Dict[str, object], payload: bytes = b"") -> None:
        """Answer with a result, unless the call has answered already."""
        if self._end():
            self._reply(protocol.result(self.call_id, value, payload))

    def fail(self, code: str, message: str, details: Optional[dict] = None) -> None:
        """Answer with an error, unless the call has answered already."""
        if self._end():
            self._reply(protocol.error(self.call_id, code, message, details))
