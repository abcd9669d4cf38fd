"""What a session does when it loses its sandbox.

Calls in flight fail at once with the cause (``SandboxLost``), and what is
left of the sandbox is removed.  Then either the session stays ``broken`` or
``crashed`` for good, listed with the cause until it is closed, or -- opened
with ``restart_on_crash`` -- it starts a fresh sandbox of the same shape in
place of the old, turns ``ready`` again, and says so once, in the next
result (``ExecResult.sandbox_restarted``, or a text block at the head of the
next tool batch): files, processes, shells and interpreters from before are
gone, and a model or a script must know that.  At most
``session.max_restarts`` restarts per session: a sandbox that keeps dying
stays down rather than looping.

Must not: decide when a sandbox is lost (``session_health`` does) or start a
sandbox by other means than the session's own start.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog
import trio

from orchestrator.errors import SandboxLost, SbxError
from orchestrator.sandbox_removal import remove_sandbox
from orchestrator.session_health import RootWatch, SandboxHealth

if TYPE_CHECKING:
    from orchestrator.backends.base import SandboxBackend
    from orchestrator.config import Config
    from orchestrator.guest_client.client import GuestClient
    from orchestrator.observe import Observer
    from orchestrator.options import SandboxOptions
    from orchestrator.sandbox_spec import SandboxShape

__all__ = ["SessionRecovery"]

LossState = Literal["broken", "crashed"]


class _Hooks(Protocol):
    @property
    def observer(self) -> Observer: ...

    @property
    def remove_later(self) -> Callable[[str, str, str], None]: ...


class SessionRecovery:
    """The loss and restart half of ``Session`` (a mixin: it uses the session's state)."""

    id: str
    image: str
    state: Any
    failure: str | None
    options: SandboxOptions
    shape: SandboxShape
    health: SandboxHealth
    sandbox_id: str | None
    restarts: int
    last_restart: dict[str, Any] | None
    _restart_notice: str | None
    _client: GuestClient | None
    _gone: SandboxLost | None
    _config: Config
    _backend: SandboxBackend
    _hooks: _Hooks
    _log: structlog.typing.FilteringBoundLogger
    _start_sandbox: Callable[[trio.Nursery], Awaitable[None]]
    _start_desktop: Callable[[], Awaitable[None]]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    async def _watch_health(self, nursery: trio.Nursery) -> None:
        """Watch the sandbox until it is lost; restart it while the session may."""
        while True:
            state, cause = await self._wait_until_lost()
            if self.closed:
                return
            if not self._may_restart():
                await self._lose(state, cause)
                return
            if not await self._restart(nursery, state, cause):
                return

    async def _wait_until_lost(self) -> tuple[LossState, str]:
        settings = self._config.session
        root = None
        if self.shape.writable_root and self.sandbox_id is not None:
            usage = functools.partial(self._backend.root_usage, self.sandbox_id)
            root = RootWatch(usage, self.shape.root_size, self._config.sandbox.root_check_interval)
        assert self._client is not None
        return await self.health.wait(
            self._client.channel,
            interval=settings.heartbeat_interval,
            timeout=settings.heartbeat_timeout,
            root=root,
        )

    def _may_restart(self) -> bool:
        return bool(self.options.restart_on_crash) and (
            self.restarts < self._config.session.max_restarts
        )

    async def _lose(self, state: LossState, cause: str) -> None:
        """The sandbox is lost for good: fail every call with the cause, remove what is left."""
        if self.closed:
            return
        self.state = state
        self.failure = cause
        self._gone = SandboxLost(f"session {self.id}", state, cause)
        self._log.warning("sandbox lost", state=state, cause=cause)
        self._hooks.observer.session_failed(self.image, state)
        await self._discard_sandbox(cause)

    async def _restart(self, nursery: trio.Nursery, state: LossState, cause: str) -> bool:
        """A fresh sandbox in place of the lost one; ``False`` if none could be started
        (the session is then lost for good, with both causes)."""
        self.state = state
        self.failure = cause
        self._gone = SandboxLost(f"session {self.id}", state, cause).with_hint(
            remedy="retry in a moment: a fresh sandbox is starting (restart_on_crash)",
            retryable=True,
            retry_after=2.0,
        )
        self._log.warning("sandbox lost; starting a fresh one", state=state, cause=cause)
        self._hooks.observer.session_failed(self.image, state)
        await self._discard_sandbox(cause)
        old = self.sandbox_id
        self.health = SandboxHealth()  # the old sandbox's late events must not count
        self.sandbox_id = None
        try:
            with trio.fail_after(self._config.sandbox.start_timeout + 5):
                await self._start_sandbox(nursery)
                # Calls reach the fresh sandbox from here (the desktop's start among them);
                # until now they failed with the loss, marked retryable.
                self._gone = None
                await self._start_desktop()
        except (SbxError, trio.TooSlowError) as exc:
            self._gone = None
            await self._lose("crashed", f"{cause}; starting a fresh sandbox failed: {exc}")
            return False
        self.restarts += 1
        self.last_restart = {"at": time.time(), "state": state, "cause": cause, "sandbox": old}
        self._restart_notice = (
            f"[sbx: the session's sandbox was {state} ({cause}) and was replaced by a fresh one "
            f"(restart {self.restarts} of at most {self._config.session.max_restarts}): files, "
            "processes, shells and interpreter state from before are gone]"
        )
        self._gone = None
        self.failure = None
        self.state = "ready"
        self._log.info("sandbox restarted", restarts=self.restarts, sandbox=self.sandbox_id)
        return True

    def take_restart_notice(self) -> str | None:
        """The words for the next result after a restart, once (then ``None``)."""
        notice, self._restart_notice = self._restart_notice, None
        return notice

    async def _discard_sandbox(self, cause: str) -> None:
        """Fail the calls in flight with ``self._gone`` and remove the sandbox: shielded,
        bounded, logged."""
        await self._close_and_remove(cause, gone=self._gone)

    async def _close_and_remove(self, reason: str, *, gone: SandboxLost | None = None) -> None:
        """Close the channel and remove the sandbox within ``shutdown_timeout``, shielded.

        A removal that misses the deadline (or fails) is not forgotten: it is logged,
        counted and handed to the supervisor's ``LateRemovals``, which retries it in the
        background until the engine no longer lists the sandbox.
        """
        timeout = self._config.shutdown_timeout
        sandbox_id = self.sandbox_id
        failure: str | None = None
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + timeout
            try:
                if self._client is not None:
                    self._client.close(reason, gone=gone)
                    await self._client.aclose()
            except SbxError as exc:
                self._log.warning("closing the channel failed", error=str(exc))
            if sandbox_id is not None:
                failure = await remove_sandbox(self._backend, sandbox_id)
        if sandbox_id is None:
            return
        if scope.cancelled_caught:
            failure = f"not removed within shutdown_timeout ({timeout:g} s)"
        if failure is not None:
            self._hooks.remove_later(sandbox_id, self.id, failure)
