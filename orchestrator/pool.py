"""Spare sandboxes, started ahead of demand (``[pool]`` in the configuration).

Opening a session costs a container create and start plus the guest's
greeting -- a quarter of a second here, most of it the engine's.  Evaluation
runs open hundreds of throwaway sessions and an HTTP client waits for each,
so the supervisor can keep a few spares per image running and hand one out
the moment a session asks for what a spare already is.

A spare is an ordinary ``Session`` started with the pool's template (the
image, every other option at its default; the memory store's default
namespace for local use, or no store, per ``pool.memories``) and flagged
``spare``: it is not listed, does not count
towards ``max_sessions`` and its TTL and idle clocks wait until it is adopted.
A request matches when it would make the same sandbox (``sandbox_key``);
``ttl`` and ``idle_timeout`` live in this process and may differ.  A spare
unused for ``pool.max_age`` is replaced, and one that fails to start makes the
pool wait ``pool.retry_after`` before trying that image again.

Must not: hand out a spare whose sandbox differs in any way from what the
request would have made, or leave a spare behind at shutdown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
import trio

from orchestrator.config import Config
from orchestrator.errors import SbxError
from orchestrator.observe import Observer
from orchestrator.options import SandboxOptions
from orchestrator.sandbox_spec import SandboxShape, sandbox_key
from orchestrator.session import Session

__all__ = ["SandboxPool", "SpareHost"]

log = structlog.get_logger("orchestrator.pool")


class SpareHost(Protocol):
    """What the pool needs from the supervisor that runs it (which it never imports)."""

    observer: Observer

    def new_session(self, options: SandboxOptions, owner: str | None = None) -> Session:
        """A session object for ``options``, not started yet."""
        ...

    async def start_session_task(self, session: Session) -> None:
        """Run ``session`` in the root nursery; return once its sandbox is ready."""
        ...

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` in the background, in the root nursery."""
        ...


class SandboxPool:
    """Keeps ``pool.size`` spares of each ``pool.images`` started; hands them out."""

    def __init__(self, host: SpareHost, config: Config) -> None:
        self._host = host
        self._config = config
        self._templates = {
            image: SandboxOptions(image=image, memories=config.pool.memories)
            for image in config.pool.images
        }
        self._spares: dict[SandboxShape, list[Session]] = {}
        self._starting: set[Session] = set()
        self._changed = trio.Event()
        self._stopping = False
        self.handed_out = 0
        """Sessions served from a spare so far (for tests and metrics)."""

    @property
    def enabled(self) -> bool:
        return self._config.pool.size > 0 and bool(self._templates)

    def spares(self) -> list[Session]:
        """The ready spares, every image."""
        return [s for group in self._spares.values() for s in group if not s.closed]

    def take(self, options: SandboxOptions, owner: str | None) -> Session | None:
        """A ready spare turned into the caller's session, or ``None`` (start one afresh)."""
        if not self.enabled or self._stopping:
            return None
        key = sandbox_key(options, self._config, owner)
        group = self._spares.get(key) if key is not None else None
        while group:
            session = group.pop(0)
            if not session.alive:
                if not session.closed:  # its sandbox died while it waited: clear it away
                    self._host.spawn(session.close, "the spare's sandbox stopped")
                continue
            session.adopt(options, owner)
            self.handed_out += 1
            self._host.observer.session_adopted(session.image)
            self._changed.set()
            log.info(
                "session opened on a spare sandbox", session_id=session.id, image=session.image
            )
            return session
        return None

    def reconfigured(self) -> None:
        """``pool.size`` (or its timings) changed while running: refill to the new size."""
        self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Refill every image's spares, one start at a time, until cancelled."""
        task_status.started()
        if not self._templates:
            return
        retry_at: dict[str, float] = {}
        while not self._stopping:
            self._changed = trio.Event()
            if not self.enabled:  # pool.size = 0, until a reload raises it
                await self._changed.wait()
                continue
            wake_at = trio.current_time() + self._config.pool.max_age
            for image, template in self._templates.items():
                key = sandbox_key(template, self._config)
                assert key is not None  # templates have no labels
                group = self._spares.setdefault(key, [])
                group[:] = [s for s in group if not s.closed]
                if trio.current_time() < retry_at.get(image, 0.0):
                    wake_at = min(wake_at, retry_at[image])
                    continue
                while len(group) < self._config.pool.size and not self._stopping:
                    try:
                        group.append(await self._start_spare(template))
                    except Exception as exc:
                        if self._stopping:
                            return
                        retry_at[image] = trio.current_time() + self._config.pool.retry_after
                        wake_at = min(wake_at, retry_at[image])
                        log.warning(
                            "could not start a spare sandbox; retrying later",
                            image=image,
                            retry_after=self._config.pool.retry_after,
                            error=str(exc) if isinstance(exc, SbxError) else repr(exc),
                        )
                        break
            with trio.move_on_at(wake_at):
                await self._changed.wait()

    async def _start_spare(self, template: SandboxOptions) -> Session:
        session = self._host.new_session(template)
        session.spare = True
        session.on_closed = self._forget
        self._starting.add(session)
        try:
            await self._host.start_session_task(session)
        finally:
            self._starting.discard(session)
        return session

    def _forget(self, session: Session) -> None:
        """A spare closed (aged out, or its sandbox died): make another."""
        if session.spare:
            self._changed.set()

    async def close_all(self) -> None:
        """Stop refilling and remove every spare (shutdown)."""
        self._stopping = True
        self._changed.set()
        async with trio.open_nursery() as nursery:
            for session in [*self.spares(), *self._starting]:
                nursery.start_soon(session.close, "supervisor shutdown")
        self._spares.clear()
