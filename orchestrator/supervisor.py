"""The root of the task tree: the session registry, expiry, orphan reaping, shutdown.

The supervisor owns one root nursery; every session is a task in it, so
nothing a session starts can outlive the supervisor.  At start-up it reaps
sandboxes left by a supervisor that died (found by label; the dead man's
switch normally removes them first, but a container created and never
started has no guest to notice).  It knows nothing of tools.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
import trio

from orchestrator.backends.base import (
    LABEL_EXPIRES,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_SUPERVISOR,
    SandboxBackend,
    SandboxEvent,
    SandboxInfo,
)
from orchestrator.config import Config
from orchestrator.errors import (
    EngineUnavailable,
    SbxError,
    SessionError,
    SessionLimitReached,
    SessionNotFound,
)
from orchestrator.observe import NullObserver, Observer
from orchestrator.options import SandboxOptions
from orchestrator.pool import SandboxPool
from orchestrator.resilience import Resilience
from orchestrator.sandbox_removal import LateRemovals
from orchestrator.session import Session, SessionHooks, ToolRunner, ViewLinker

__all__ = ["Supervisor", "process_identity", "supervisor_alive"]

log = structlog.get_logger("orchestrator.supervisor")


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot: pid plus this is unique."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def process_identity() -> str:
    """``host:pid:start`` of this process, written on every sandbox it starts."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or '0'}"


def supervisor_alive(identity: str) -> bool | None:
    """Whether the supervisor named by ``identity`` still runs; ``None`` if unknowable here."""
    host, _, rest = identity.partition(":")
    pid_text, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    current = _start_ticks(int(pid_text))
    return current is not None and current == ticks


class Supervisor:
    """Owns the sessions. Use through ``Orchestrator``."""

    def __init__(
        self,
        config: Config,
        backend: SandboxBackend,
        *,
        observer: Observer | None = None,
        run_tools: ToolRunner | None = None,
        view_url: ViewLinker | None = None,
        resilience: Resilience | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.identity = process_identity()
        self.sessions: dict[str, Session] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self.observer: Observer = observer or NullObserver()
        """Told about session starts, failures and closes (metrics)."""
        self.late_removals = LateRemovals(backend, on_late=self.observer.removal_late)
        """Sandboxes whose removal missed its deadline, retried until the engine drops them."""
        self.hooks = SessionHooks(
            identity=self.identity,
            observer=self.observer,
            forget=self._forget,
            run_tools=run_tools,
            view_url=view_url,
            resilience=resilience,
            remove_later=self.late_removals.add,
        )
        """What every session of this supervisor is handed (it never reaches back up)."""
        self.pool = SandboxPool(self, config)
        """Spare sandboxes for sessions to adopt (``[pool]``; off unless ``pool.size`` > 0)."""
        self.reaped = trio.Event()
        """Set once the start-up sweep for orphans has finished (or was not asked for)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host sessions until cancelled, reaping orphans beside the first ones.

        The sweep runs in the background: it never touches this supervisor's
        own sandboxes, so sessions need not wait for it, and a one-shot
        ``sbx run`` saves the engine round trips.  ``wait_reaped`` lets
        shutdown (and tests) see it through.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_engine)
            await nursery.start(self.late_removals.run)
            if self.config.reap_orphans:
                nursery.start_soon(self._reap_at_start)
            else:
                self.reaped.set()
            await nursery.start(self.pool.run)
            task_status.started()
            await trio.sleep_forever()

    async def _watch_engine(self) -> None:
        """Hand the engine's events on our sandboxes to their sessions; reconnect when the
        stream ends (the heartbeat covers the gap)."""
        labels = {LABEL_MANAGED: "true", LABEL_SUPERVISOR: self.identity}
        backoff = 0.5
        while True:
            try:
                await self.backend.watch(labels, self._on_engine_event)
                backoff = 0.5
            except (SbxError, OSError) as exc:
                log.debug("engine event stream lost; reconnecting", error=str(exc))
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _on_engine_event(self, event: SandboxEvent) -> None:
        for session in list(self.sessions.values()) + self.pool.spares():
            if session.sandbox_id == event.sandbox_id:
                if not session.closed:
                    session.health.notice(event)
                return

    async def _reap_at_start(self) -> None:
        try:
            reaped = await self.reap_orphans()
        except EngineUnavailable as exc:
            # Said loudly by the first session that needs the engine; no twice.
            log.debug("could not look for orphaned sandboxes", error=str(exc))
        except SbxError as exc:
            log.warning("could not look for orphaned sandboxes", error=str(exc))
        else:
            if reaped:
                log.info(
                    "reaped orphaned sandboxes",
                    count=len(reaped),
                    ids=[info.id[:12] for info in reaped],
                )
        finally:
            self.reaped.set()

    async def wait_reaped(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) for the start-up sweep for orphans to end."""
        with trio.move_on_after(timeout):
            await self.reaped.wait()

    async def open_session(self, options: SandboxOptions, owner: str | None = None) -> Session:
        """Start a session's task in the root nursery and wait until its sandbox is ready."""
        if self._nursery is None or self._stopping:
            raise SessionError("the orchestrator is not running (or is shutting down)")
        if len(self.sessions) >= self.config.session.max_sessions:
            raise SessionLimitReached(
                f"{len(self.sessions)} sessions are open, the configured maximum; close some or "
                "raise session.max_sessions"
            )
        if owner is not None:
            mine = sum(1 for session in self.sessions.values() if session.owner == owner)
            if mine >= self.config.limits.max_sessions_per_owner:
                raise SessionLimitReached(
                    f"{mine} sessions of {owner!r} are open, the ceiling "
                    f"limits.max_sessions_per_owner; close some first"
                )
        spare = self.pool.take(options, owner)
        if spare is not None:
            self.sessions[spare.id] = spare
            return spare
        session = self.new_session(options, owner)
        self.sessions[session.id] = session
        try:
            await self.start_session_task(session)
        except BaseException:
            self.sessions.pop(session.id, None)
            raise
        return session

    def new_session(self, options: SandboxOptions, owner: str | None = None) -> Session:
        """A session of this supervisor for ``options``, not started yet."""
        return Session(self.backend, self.config, options, self.hooks, owner=owner)

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` as a task of the root nursery (background clean-up)."""
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def start_session_task(self, session: Session) -> None:
        """Run ``session`` as a task of the root nursery; return once its sandbox is ready."""
        if self._nursery is None:
            raise SessionError("the orchestrator is not running (or is shutting down)")
        await self._nursery.start(session._run)

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(
                f"no open session {session_id!r}; it was closed, expired, or never existed "
                "(list the open ones with `sbx session ls`)"
            )
        return session

    def _forget(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    async def close_all(self, reason: str = "supervisor shutdown") -> None:
        """Close every session concurrently and wait for their sandboxes to go."""
        self._stopping = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.pool.close_all)
            for session in list(self.sessions.values()):
                nursery.start_soon(session.close, reason)
        # Removals that missed their deadline get one more try; what is left is the
        # reaper's (its label names this supervisor, which is gone by then).
        await self.late_removals.drain(min(5.0, self.config.shutdown_timeout))

    async def reap_orphans(self, *, all_expired: bool = True) -> list[SandboxInfo]:
        """Remove sandboxes of this owner whose supervisor is gone (or that are expired)."""
        labels: Mapping[str, str] = {LABEL_MANAGED: "true", LABEL_OWNER: self.config.owner}
        reaped: list[SandboxInfo] = []
        now = time.time()
        for info in await self.backend.list(labels):
            owner = info.labels.get(LABEL_SUPERVISOR, "")
            if owner == self.identity:
                continue
            alive = supervisor_alive(owner)
            expires = _float(info.labels.get(LABEL_EXPIRES))
            expired = all_expired and expires is not None and expires < now
            if alive is False or expired or (alive is None and not owner):
                try:
                    await self.backend.remove(info.id)
                except SbxError as exc:
                    log.warning("could not reap sandbox", sandbox=info.id[:12], error=str(exc))
                    continue
                reaped.append(info)
        return reaped

    def describe(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "sessions": [session.describe() for session in self.sessions.values()],
        }


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
