"""One sandbox's life: start it, watch its clocks, close it, and nothing else.

A session runs as a task in the supervisor's root nursery, with a nursery
and cancel scope of its own: the channel's reader lives there, TTL and idle
expiry are watched there, and closing the session -- by the caller, by
expiry, or by supervisor shutdown -- cancels every call in flight, closes the
channel (the guest exits) and removes the container, shielded so teardown
survives the cancellation that caused it.

What a session can *do* (exec, shells, files, code, connections) is
``SessionCalls``, which builds typed requests for the session's
``GuestClient``.  What it needs from whoever runs it (its identity, an
observer, how to forget it, a tool runner and a live view) is handed to it
as ``SessionHooks``: a session never reaches up to its supervisor.

Must not: import the supervisor, the router or the live view, or know how its
container is made (the backend's business).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
import trio

from orchestrator._exceptions import unwrap_single_exception
from orchestrator.backends.base import SandboxBackend, SandboxSpec
from orchestrator.config import Config
from orchestrator.desktop.desktop import Desktop, start_session_desktop
from orchestrator.errors import SandboxLost, SessionClosed, SessionError
from orchestrator.guest_client.client import GuestClient
from orchestrator.locks import ResourceLocks
from orchestrator.memory_guest import MemoryGuest
from orchestrator.observe import NullObserver, Observer
from orchestrator.options import SandboxOptions
from orchestrator.resilience import Resilience
from orchestrator.sandbox_removal import log_late_removal
from orchestrator.sandbox_spec import (
    SandboxShape,
    build_spec,
    resolve_shape,
    with_image_defaults,
)
from orchestrator.sandbox_start import (
    guest_log_sink,
    make_client,
    start_sandbox,
)
from orchestrator.session_health import SandboxHealth
from orchestrator.session_recovery import SessionRecovery
from orchestrator.session_transfers import SessionTransfers
from orchestrator.snapshots import Snapshot, check_fork_allowed, restore_snapshot, take_snapshot

__all__ = ["Session", "SessionHooks", "SessionState", "ToolRunner", "ViewLinker"]

log = structlog.get_logger("orchestrator.session")

SessionState = Literal["starting", "ready", "broken", "crashed", "closing", "closed"]
"""``broken``: the guest stopped answering, or was paused; ``crashed``: the sandbox died or
was removed.  Either way it is removed, calls fail with ``SandboxGone`` and the cause, and
the session stays listed until it is closed."""

ToolRunner = Callable[
    ["Session", Sequence[Any], Mapping[str, str] | None], Awaitable[list[dict[str, Any]]]
]
"""Runs a batch of ``tool_use`` blocks in a session (the router's ``run``)."""

ViewLinker = Callable[["Session", bool], Awaitable[str]]
"""Makes a live-view URL for a session's desktop; ``True`` for an interactive one."""


@dataclass
class SessionHooks:
    """What a session needs from whoever runs it, handed over when it is made."""

    identity: str = "unknown:0:0"
    """The running supervisor's ``host:pid:start``, written on the sandbox for the reaper."""
    observer: Observer = field(default_factory=NullObserver)
    forget: Callable[[Session], None] = lambda session: None
    """Told once the session has closed (the registry drops it)."""
    run_tools: ToolRunner | None = None
    view_url: ViewLinker | None = None
    resilience: Resilience | None = None
    """Breakers per image (``sandbox_start``); ``None``: none."""
    remove_later: Callable[[str, str, str], None] = log_late_removal
    """Told ``(sandbox_id, session_id, why)`` when a removal missed its deadline: the
    supervisor's ``LateRemovals`` retries it in the background."""


class Session(SessionRecovery, SessionTransfers):
    """A live sandbox. Made by ``Orchestrator.session()``; never constructed directly."""

    _hooks: SessionHooks

    def __init__(
        self,
        backend: SandboxBackend,
        config: Config,
        options: SandboxOptions,
        hooks: SessionHooks,
        owner: str | None = None,
    ) -> None:
        self.id = secrets.token_hex(6)
        self.owner = owner
        """Who the session is for (an API token's owner); ``None`` for local use."""
        self._backend = backend
        self._config = config
        self._hooks = hooks
        self.options = options
        self.shape: SandboxShape = resolve_shape(options, config, owner)
        self.image = self.shape.image
        self.state: SessionState = "starting"
        self.created_at = time.time()
        self.ttl = options.ttl or config.session.ttl
        self.idle_timeout = options.idle_timeout or config.session.idle_timeout
        self.labels = dict(options.labels)
        self.sandbox_id: str | None = None
        self.close_reason: str | None = None
        self.failure: str | None = None
        """Why the session is ``broken`` or ``crashed`` (``None`` while healthy)."""
        self._gone: SandboxLost | None = None
        self.restarts = 0
        """Fresh sandboxes started in place of lost ones (``restart_on_crash``)."""
        self.last_restart: dict[str, Any] | None = None
        self._restart_notice: str | None = None
        self.health = SandboxHealth()
        """Its verdict on the sandbox; the supervisor hands it the engine's events."""
        self._client: GuestClient | None = None
        self._scope: trio.CancelScope | None = None
        self._wake = trio.Event()
        self._closed = trio.Event()
        self._log = log.bind(session_id=self.id)
        self.locks = ResourceLocks()
        """Per-resource locks for tool calls (shell, display, files); never cross sessions."""
        self._tool_slots: trio.CapacityLimiter | None = None
        self._desktop: Desktop | None = None
        store = self.shape.memory_store
        self.memory_namespace = store.namespace if store is not None else None
        """The memory store's namespace the memory tool edits at /memories (``None``: none)."""
        owner_of_store = store.owner if store is not None else None
        self._memory = MemoryGuest(config, self.memory_namespace, owner_of_store, self.id, hooks)
        self._nursery: trio.Nursery | None = None
        self.spare = False
        """A pool's spare: started ahead of demand, its TTL and idle clocks not yet running."""
        self.on_closed: Callable[[Session], None] | None = None
        """Told once the sandbox is gone (the pool replaces its spares this way)."""
        self._clock_start = 0.0

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.image} {self.state}>"

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl

    @property
    def client(self) -> GuestClient:
        """The typed client of this session's guest (every call into the sandbox)."""
        if self._gone is not None:
            raise self._gone
        if self._client is None or self.closed:
            raise SessionClosed(
                f"session {self.id} is closed ({self.close_reason or 'closed'}); open a new session"
                if self.closed
                else f"session {self.id} is not ready yet; wait for it to start"
            )
        return self._client

    @property
    def guest_info(self) -> dict[str, Any]:
        """What the guest said of itself when it greeted (version, capabilities...)."""
        return self._client.guest_info if self._client is not None else {}

    # -- life -------------------------------------------------------------------

    def _spec(self) -> SandboxSpec:
        # A spare's life may start as late as max_age from now: the label must
        # never tell another supervisor it expired while it is still in use.
        expires = self.expires_at + self._config.pool.max_age * self.spare
        return build_spec(
            self.shape,
            session_id=self.id,
            supervisor=self._hooks.identity,
            installation=self._config.owner,
            expires=expires,
            client=self.owner,
            labels=self.labels,
        )

    def adopt(self, options: SandboxOptions, owner: str | None) -> None:
        """Turn a pool's spare into the caller's session: its owner, its TTL, clocks from now.

        Only options that live in this process (``ttl``, ``idle_timeout``) may differ
        from the spare's; the pool hands out a spare only when the rest match.
        """
        self.spare = False
        self.owner = owner
        self.options = options
        self.ttl = options.ttl or self._config.session.ttl
        self.idle_timeout = options.idle_timeout or self._config.session.idle_timeout
        self.created_at = time.time()
        self._clock_start = trio.current_time()
        if self._client is not None:
            self._client.last_active = self._clock_start
        self._wake.set()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's task: start the sandbox, serve until closed or expired, clean up."""
        structlog.contextvars.bind_contextvars(session_id=self.id)
        started = False
        try:
            with trio.CancelScope() as scope, unwrap_single_exception():
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self._start_sandbox(nursery)
                    await self._start_desktop()
                    self.state = "ready"
                    started = True
                    nursery.start_soon(self._watch_health, nursery)
                    task_status.started()
                    reason = await self._watch_expiry()
                    self.close_reason = self.close_reason or reason
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            if not started:
                self._hooks.observer.session_failed(self.image, type(exc).__name__)
                raise
            # After start-up a failure must not take the supervisor's nursery down.
            self._log.exception("session failed")
        finally:
            await self._teardown()
        if not started:
            raise SessionClosed(f"session {self.id} was closed before its sandbox was ready")

    async def _start_sandbox(self, nursery: trio.Nursery) -> None:
        t0 = trio.current_time()
        defaults = await self._backend.image_defaults(self.image)
        check_fork_allowed(self.image, defaults, self.owner)
        self.shape = with_image_defaults(self.shape, self.options, defaults)
        await self._memory.prepare()
        channel = await start_sandbox(
            self._backend,
            self._spec(),
            nursery,
            config=self._config,
            label=f"for session {self.id} ({self.image})",
            session_id=self.id,
            on_created=self._created,
            on_stderr=guest_log_sink(self._log),
            resilience=self._hooks.resilience,
        )
        self._client = make_client(channel, self._config, self.id, self._hooks.observer)
        if defaults.snapshot_files is not None:  # a fork: its mounts as the snapshot kept them
            await restore_snapshot(self._client, self._config, self.shape, defaults.snapshot_files)
        seconds = trio.current_time() - t0
        self._hooks.observer.session_started(self.image, seconds)
        self._log.info(
            "session ready",
            image=self.image,
            sandbox=self.sandbox_id[:12] if self.sandbox_id else None,
            seconds=round(seconds, 3),
        )

    def _created(self, sandbox_id: str) -> None:
        self.sandbox_id = sandbox_id

    async def _watch_expiry(self) -> str:
        """Sleep until the TTL, the idle timeout, or a close request; say which.

        Calls only move the client's ``last_active`` and never wake this task
        (that would cost every call a task switch); at an idle deadline that
        finds calls in flight, the session counts as active and the watch goes on.
        """
        self._clock_start = trio.current_time()
        client = self.client
        client.last_active = self._clock_start
        while True:
            if self.close_reason is not None:
                return self.close_reason
            if self._client is not None and self._client is not client:  # a restart's
                self._client.last_active = client.last_active
                client = self._client
            now = trio.current_time()
            if self.spare:
                spare_deadline = self._clock_start + self._config.pool.max_age
                if now >= spare_deadline:
                    return "spare unused for pool.max_age"
                with trio.move_on_at(spare_deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
                continue
            if client.active_calls:
                client.last_active = now
            ttl_deadline = self._clock_start + self.ttl
            idle_deadline = client.last_active + self.idle_timeout
            if now >= ttl_deadline:
                return "ttl expired"
            if now >= idle_deadline:
                return "idle timeout"
            with trio.move_on_at(min(ttl_deadline, idle_deadline)):
                await self._wake.wait()
            self._wake = trio.Event()

    async def memory_client(self) -> GuestClient:
        """The client of the guest that edits this session's memory store (on the host)."""
        return await self._memory.client(None if self.closed else self._nursery)

    async def _teardown(self) -> None:
        """Cancel calls, close the channel, remove the sandbox: shielded, bounded, logged."""
        self.state = "closing"
        await self._memory.aclose()
        try:
            await self._close_and_remove(self.close_reason or "closed")
        except Exception:
            self._log.exception("sandbox removal failed; `sbx gc` will retry")
        self.state = "closed"
        self._closed.set()
        self._hooks.forget(self)
        if self.on_closed is not None:
            self.on_closed(self)
        if self._client is not None:  # it had started: a failed start was counted as such
            self._hooks.observer.session_closed(
                self.image, self.close_reason or "closed", time.time() - self.created_at
            )
        self._log.info("session closed", reason=self.close_reason or "closed")

    async def close(self, reason: str = "closed by the caller") -> None:
        """Cancel the calls in flight, remove the sandbox, and wait until it is gone."""
        if self.close_reason is None:
            self.close_reason = reason
        self._wake.set()
        if self.state == "starting" and self._scope is not None:
            self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self.state in ("closing", "closed")

    @property
    def alive(self) -> bool:
        """Ready, and its channel to the guest still open (the sandbox has not died).

        ``state`` turns ``crashed`` or ``broken`` once the heartbeat notices;
        this also sees a channel that closed a moment ago."""
        return (
            self.state == "ready" and self._client is not None and not self._client.channel.closed
        )

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def snapshot(self) -> Snapshot:
        """This session's filesystem (root changes and tmpfs mounts, not its processes) as
        a local image that ``orch.session(image=snap)`` forks; ``SnapshotError`` if not."""
        if self.state != "ready" or self.sandbox_id is None:
            raise SessionClosed(f"session {self.id} is {self.state}; only a ready one snapshots")
        return await take_snapshot(
            self._backend,
            self.client,
            self._config,
            self.sandbox_id,
            self.id,
            self.shape,
            self.owner,
        )

    # -- tools, the desktop and its live view ------------------------------------------

    def tool_slots(self, limit: int) -> trio.CapacityLimiter:
        """This session's cap on concurrent tool calls (made on first use)."""
        if self._tool_slots is None:
            self._tool_slots = trio.CapacityLimiter(limit)
        return self._tool_slots

    async def _start_desktop(self) -> None:
        """A desktop image's X server answers before the session counts as ready."""
        self._desktop = await start_session_desktop(
            self.client,
            self._config.desktop,
            image=self.image,
            screen=self.options.screen,
            wanted=self.options.desktop,
        )

    async def run_tools(
        self, blocks: Sequence[Any], *, tool_types: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Run Claude's ``tool_use`` blocks here; ``tool_result`` blocks in the same order.

        Calls on different resources run concurrently, calls on the same one in
        order; a failing call is an ``is_error`` result and the others complete.
        ``tool_types`` names the advertised version per tool (``{"computer":
        "computer_20251124"}``) where versions differ in behaviour.  Runs on the
        tool router the session was opened with (``Orchestrator.router``).
        """
        if self._hooks.run_tools is None:
            raise SessionError("this session has no tool router; open it through an Orchestrator")
        return await self._hooks.run_tools(self, blocks, tool_types)

    @property
    def desktop(self) -> Desktop:
        """The session's X desktop (``orchestrator.desktop.Desktop``)."""
        if self._desktop is None:
            raise SessionError(
                f"session {self.id} ({self.image}) has no desktop; open a session of the "
                "desktop image (image='desktop') for screenshots and the computer tool"
            )
        return self._desktop

    async def view_url(self, *, interactive: bool = False) -> str:
        """A URL that shows this desktop live in a browser (read-only unless ``interactive``).

        It serves noVNC and bridges it to the sandbox's VNC server over the
        channel; the URL carries a token that only works for this session.
        """
        if self._hooks.view_url is None:
            raise SessionError("the live view needs a session opened through an Orchestrator")
        return await self._hooks.view_url(self, interactive)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for listings."""
        return {
            "id": self.id,
            "image": self.image,
            "state": self.state,
            "sandbox_id": self.sandbox_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "labels": dict(self.labels),
            "owner": self.owner,
            "failure": self.failure,
            "restarts": self.restarts,
            "last_restart": self.last_restart,
            "active_calls": self._client.active_calls if self._client is not None else 0,
        }
