"""Sandboxes whose removal missed its deadline: said, counted, and removed again until gone.

A session removes its sandbox in a shielded scope with a deadline
(``shutdown_timeout``), so a slow engine cannot hold its caller.  Some
removals take longer than that (a runtime that tears down hundreds of
processes can take a minute and more), and a removal cut short may leave the
container running.  The session hands such a sandbox to ``LateRemovals``,
which logs it, counts it (``sbx_sandbox_removals_late_total``) and tries
again in the background, with growing pauses, until the engine no longer
lists it.  It runs in the supervisor's root nursery; whatever is still
pending when the supervisor stops is named in the log and left to the
reaper (the next start-up's sweep, or ``sbx gc``), which finds it by its
dead supervisor's label.

Must not: block the session that hands a sandbox over, or hold more than
``max_pending`` sandboxes (past that, the reaper's sweep is the fallback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
import trio

from orchestrator.backends.base import LABEL_MANAGED, LABEL_SESSION, SandboxBackend
from orchestrator.errors import SbxError

__all__ = ["LateRemovals", "log_late_removal", "remove_sandbox"]

log = structlog.get_logger("orchestrator.removal")


def log_late_removal(sandbox_id: str, session_id: str, reason: str) -> None:
    """What a session does with a late removal when nobody retries it: say so."""
    log.warning(
        "sandbox removal missed its deadline; `sbx gc` removes it",
        sandbox=sandbox_id[:12],
        session_id=session_id,
        reason=reason,
    )


async def remove_sandbox(backend: SandboxBackend, sandbox_id: str) -> str | None:
    """Remove ``sandbox_id`` in the caller's scope; ``None`` when done, else why not.

    A scope that runs out while the engine works counts as not done: the caller
    checks its scope's ``cancelled_caught`` and says so.
    """
    try:
        await backend.remove(sandbox_id)
    except SbxError as exc:
        return str(exc)
    except Exception as exc:  # a backend's bug must not cost the sandbox its retries
        log.exception("removing a sandbox failed", sandbox=sandbox_id[:12])
        return repr(exc)
    return None


@dataclass
class _Pending:
    session_id: str
    attempts: int = 0
    due: float = 0.0
    attempting: trio.Event | None = None
    """Set while an attempt is in flight; the event fires when it ends (one at a time)."""


class LateRemovals:
    """Retries the removal of sandboxes that outlived their session's deadline."""

    def __init__(
        self,
        backend: SandboxBackend,
        *,
        on_late: Callable[[], None] = lambda: None,
        first_pause: float = 1.0,
        longest_pause: float = 30.0,
        attempt_timeout: float = 60.0,
        max_pending: int = 1024,
    ) -> None:
        self.backend = backend
        self.on_late = on_late
        """Told once per sandbox handed over, however often (a metric)."""
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self.attempt_timeout = attempt_timeout
        self.max_pending = max_pending
        self.pending: dict[str, _Pending] = {}
        """Sandbox ids still to remove, with their session and attempts so far."""
        self.removed = 0
        """Sandboxes removed by a retry (for tests and the log)."""
        self._wake = trio.Event()

    def add(self, sandbox_id: str, session_id: str, reason: str) -> None:
        """A removal missed its deadline (``reason``): log, count, retry in the background."""
        if sandbox_id in self.pending:
            return
        self.on_late()
        if len(self.pending) >= self.max_pending:
            log.error(
                "sandbox removal missed its deadline; too many pending to retry, "
                "left to the reaper (`sbx gc`)",
                sandbox=sandbox_id[:12],
                session_id=session_id,
                reason=reason,
            )
            return
        log.warning(
            "sandbox removal missed its deadline; retrying in the background",
            sandbox=sandbox_id[:12],
            session_id=session_id,
            reason=reason,
        )
        self.pending[sandbox_id] = _Pending(session_id, due=trio.current_time())
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Retry due removals until cancelled (a task of the supervisor's root nursery)."""
        task_status.started()
        while True:
            now = trio.current_time()
            due = [sid for sid, item in self.pending.items() if item.due <= now]
            for sandbox_id in due:
                await self._attempt(sandbox_id)
            self._wake = trio.Event()
            later = [item.due for item in self.pending.values()]
            with trio.move_on_at(min(later) if later else trio.current_time() + 3600):
                await self._wake.wait()

    async def drain(self, timeout: float) -> None:
        """One last attempt at each pending removal within ``timeout`` (shutdown); what
        is left is named in the log for the reaper.

        The background task may be mid-attempt on a sandbox when shutdown starts;
        that attempt is the last one (drain waits for it rather than racing it).
        """
        try:
            with trio.move_on_after(timeout):
                for sandbox_id in list(self.pending):
                    item = self.pending.get(sandbox_id)
                    if item is not None and item.attempting is not None:
                        await item.attempting.wait()
                    else:
                        await self._attempt(sandbox_id)
        finally:
            if self.pending:
                log.warning(
                    "sandboxes still being removed at shutdown; the next start-up or "
                    "`sbx gc` removes them",
                    sandboxes=[sid[:12] for sid in self.pending],
                )

    async def _attempt(self, sandbox_id: str) -> None:
        item = self.pending.get(sandbox_id)
        if item is None or item.attempting is not None:
            return
        item.attempts += 1
        reason: str | None = "the engine did not answer in time"
        item.attempting = attempting = trio.Event()
        try:
            with trio.move_on_after(self.attempt_timeout):
                reason = await remove_sandbox(self.backend, sandbox_id)
                if reason is None and await self._still_listed(sandbox_id, item.session_id):
                    reason = "the engine still lists it"
        finally:
            item.attempting = None
            attempting.set()
        if reason is None:
            self.pending.pop(sandbox_id, None)
            self.removed += 1
            log.info(
                "late sandbox removal done",
                sandbox=sandbox_id[:12],
                session_id=item.session_id,
                attempts=item.attempts,
            )
            return
        pause = min(self.first_pause * 2 ** (item.attempts - 1), self.longest_pause)
        item.due = trio.current_time() + pause
        log.debug(
            "late sandbox removal not done yet",
            sandbox=sandbox_id[:12],
            attempts=item.attempts,
            reason=reason,
            next_in=pause,
        )

    async def _still_listed(self, sandbox_id: str, session_id: str) -> bool:
        labels = {LABEL_MANAGED: "true", LABEL_SESSION: session_id}
        try:
            listed = await self.backend.list(labels)
        except SbxError:
            return True
        return any(info.id == sandbox_id for info in listed)
