"""A desktop operation that answers later: ``DesktopCall``, the desktop's ``RunningCall``.

Starting the X server, an input sequence with its wait for the screen to
settle, starting a VNC server and stopping the desktop each take several
steps on the guest's loop.  Every step runs guarded: an error in it (the X
connection broke, the server died) answers the call with an error -- its own
code, else ``desktop`` -- instead of escaping into the loop, and a call that
fails or is killed
first undoes what it half did (``cleanup``: release held keys, stop a
half-started server).  Must not: block, or leave the call unanswered when a
step fails.
"""

from __future__ import annotations

from typing import Callable, Optional

from . import protocol
from .calls import RunningCall
from .errors import CallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .desktop import DesktopService
    from .loop import Timer


class DesktopCall(RunningCall):
    """A desktop call that answers later; its steps run on timers, guarded by ``_guarded``."""

    def __init__(self, service: "DesktopService", call_id: int) -> None:
        guest = service.guest
        super().__init__(guest.loop, call_id, guest.send, guest.call_done)
        self.service = service
        self.guest = guest
        self.guest.calls[call_id] = self

    def later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return super().later(delay, self._guarded(callback))

    def _guarded(self, callback: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if self.finished:
                return
            try:
                callback()
            except CallError as exc:
                self.fail(exc.code, exc.message)
            except Exception as exc:
                self.fail(protocol.E_DESKTOP, self.service.explain(exc))

        return run

    def _release(self) -> None:
        self.service.pending.discard(self)

    def fail(self, code: str, message: str, details: Optional[dict] = None) -> None:
        if not self.finished:
            self.cleanup()
            super().fail(code, message, details)

    def cleanup(self) -> None:
        """Undo what a half-done call left behind (overridden where there is something)."""

    def cancel(self) -> None:
        self.fail(protocol.E_DESKTOP, "the desktop call was cancelled")

    def _abandon(self) -> None:
        if not self.finished:
            self.cleanup()
            self._end()
            self.guest.call_done(self.call_id)
