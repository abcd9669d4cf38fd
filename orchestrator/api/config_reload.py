"""Live reload of ``sbx serve``'s configuration, on SIGHUP and when its file changes.

The file, its profile and the environment are read again (off the event
loop), checked as a whole -- the new values, the running server's values for
the keys that need a restart, and the tokens as the authenticator would take
them -- and only then applied, in one synchronous step: no request sees half
a change.  A rejected change is logged with its reason and changes nothing;
changed keys that need a restart are logged as such and keep their running
values.

It must not serve HTTP or decide which keys are live (``config.reload`` does).
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog
import trio
from pydantic import ValidationError

from orchestrator.api.auth import Authenticator
from orchestrator.config import Config, LoadedConfig
from orchestrator.config.reload import apply, plan_reload, validation_message
from orchestrator.errors import ConfigError
from orchestrator.log import configure_logging

__all__ = ["ConfigReloader", "ReloadOutcome"]

log = structlog.get_logger("orchestrator.api")


class ServedState(Protocol):
    """What a reload swaps: the running configuration and the authenticator (``ApiState``)."""

    config: Config
    auth: Authenticator


@dataclass(frozen=True)
class ReloadOutcome:
    status: Literal["applied", "unchanged", "rejected"]
    applied: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    reason: str = ""


class ConfigReloader:
    """Reads the configuration again on request, SIGHUP or a change of its file."""

    def __init__(
        self,
        state: ServedState,
        bind: str,
        loaded: LoadedConfig,
        pool_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._state = state
        self._pool_changed = pool_changed
        self._bind = bind
        self._loaded = loaded
        self._lock = trio.Lock()
        self.outcomes: deque[ReloadOutcome] = deque(maxlen=32)
        """The last reloads' outcomes, oldest first (for tests and operators' tools)."""
        self.reloaded = trio.Event()
        """Set after each reload, then replaced: wait on it to see the next one."""

    async def reload(self, trigger: str) -> ReloadOutcome:
        async with self._lock:
            outcome = await self._reload(trigger)
        self.outcomes.append(outcome)
        done, self.reloaded = self.reloaded, trio.Event()
        done.set()
        return outcome

    async def _reload(self, trigger: str) -> ReloadOutcome:
        try:
            fresh = await trio.to_thread.run_sync(self._loaded.reload)
        except ConfigError as exc:
            return self._rejected(trigger, str(exc))
        running = self._state.config
        try:
            plan = plan_reload(running, fresh.config)
        except ValidationError as exc:
            return self._rejected(trigger, validation_message(exc))
        auth = self._state.auth
        if any(key.startswith("api.") for key in plan.live):
            try:
                auth = Authenticator(plan.candidate.api, self._bind)
            except ConfigError as exc:
                return self._rejected(trigger, str(exc))
        # From here to the end: no checkpoint, so every request sees all of it or none.
        apply(running, plan)
        self._state.auth = auth
        if "logging.level" in plan.live:
            configure_logging(running.logging.level, running.logging.format)
        if any(key.startswith("pool.") for key in plan.live):
            self._pool_changed()
        if plan.restart:
            log.warning(
                "configuration keys changed that need a restart; they keep their running values",
                keys=list(plan.restart),
                trigger=trigger,
            )
        if not plan.live:
            return ReloadOutcome("unchanged", needs_restart=plan.restart)
        log.info("configuration reloaded", changed=list(plan.live), trigger=trigger)
        return ReloadOutcome("applied", plan.live, plan.restart)

    def _rejected(self, trigger: str, reason: str) -> ReloadOutcome:
        log.warning(
            "configuration change rejected; the running configuration is unchanged",
            reason=reason,
            trigger=trigger,
        )
        return ReloadOutcome("rejected", reason=reason)

    async def watch_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """SIGHUP: read the configuration again (``started`` once SIGHUP is caught)."""
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            task_status.started()
            async for _ in signals:
                await self.reload("SIGHUP")

    async def watch_file(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Poll the file's identity (inode, size, mtime) every ``interval`` s; reload on change.

        ``started`` once the identity to compare with is taken."""
        path = self._loaded.request.path
        if path is None or interval <= 0:
            task_status.started()
            return
        last = await _identity(path)
        task_status.started()
        while True:
            await trio.sleep(interval)
            now = await _identity(path)
            if now != last:
                last = now
                await self.reload(f"{path} changed")


async def _identity(path: os.PathLike[str]) -> tuple[int, int, int] | None:
    try:
        stat = await trio.Path(path).stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
