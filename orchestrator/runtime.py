"""``Orchestrator``: the Python entry point to sessions.

    async with Orchestrator(config) as orch:
        async with orch.session(image="code-runner") as s:
            r = await s.exec("echo hi")

Entering starts the supervisor in a nursery of the caller's task (reaping
orphans in the background); leaving closes every session and removes every sandbox,
shielded, so an exception or a cancellation in the caller still leaves
nothing behind.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
import trio

from orchestrator._exceptions import unwrap_single_exception
from orchestrator.backends.base import SandboxBackend
from orchestrator.backends.registry import make_backend
from orchestrator.config import Config, load_config
from orchestrator.errors import SessionError
from orchestrator.live_view.service import LiveView
from orchestrator.log import configure_library_logging
from orchestrator.observe import Observer
from orchestrator.options import parse_options
from orchestrator.resilience import Resilience
from orchestrator.router import ToolRouter
from orchestrator.session import Session
from orchestrator.snapshots import Snapshot
from orchestrator.supervisor import Supervisor
from orchestrator.tools.registry import default_registry

__all__ = ["Orchestrator"]

if TYPE_CHECKING:
    from orchestrator.agent.turns import AgentResult
    from orchestrator.workflows.loading import WorkflowSource
    from orchestrator.workflows.results import WorkflowResult

log = structlog.get_logger("orchestrator")


class Orchestrator:
    """Owns a supervisor and its sessions for the duration of an ``async with``."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        backend: SandboxBackend | None = None,
        handle_signals: bool = False,
        observer: Observer | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        if not structlog.is_configured():
            # structlog's unconfigured default prints to stdout, which belongs to the
            # program embedding us: log through `logging` instead, silent unless it is set up.
            configure_library_logging()
        self.backend = backend if backend is not None else make_backend(self.config)
        found = getattr(self.backend, "resilience", None)
        self.resilience = (
            found if isinstance(found, Resilience) else Resilience(self.config.resilience)
        )
        """Retries and circuit breakers: the backend's (the engine's) and those of images
        and the Messages API; ``/readyz`` and ``/metrics`` show them."""
        self.router = ToolRouter(default_registry(self.config), self.config.tools)
        if observer is not None:
            self.router.observer = observer
        self.supervisor = Supervisor(
            self.config,
            self.backend,
            observer=observer,
            run_tools=self._run_tools,
            view_url=self._view_url,
            resilience=self.resilience,
        )
        self.view = LiveView(self.supervisor.sessions, self.config.desktop)
        """The desktops' live view: mount ``view.router`` in an HTTP app and set
        ``view.base_url``, or let ``Session.view_url`` start its own server."""
        self.handle_signals = handle_signals
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self.signalled: int | None = None

    async def __aenter__(self) -> Orchestrator:
        stack = AsyncExitStack()
        try:
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            stack.push_async_callback(self._shutdown)
            await self._nursery.start(self.supervisor.run)
            self.view.attach(self._nursery)
            if self.handle_signals:
                await self._nursery.start(self._watch_signals)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        # The caller's block runs inside our nursery, so its exception comes
        # back wrapped in a group; hand it back as the caller raised it.
        with unwrap_single_exception():
            return await stack.__aexit__(*exc_info)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _shutdown(self) -> None:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.config.shutdown_timeout + 5
            try:
                await self.supervisor.close_all()
                await self.supervisor.wait_reaped(self.config.shutdown_timeout)
            finally:
                if self._nursery is not None:
                    self._nursery.cancel_scope.cancel()
                await self.backend.aclose()

    async def _watch_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """SIGINT/SIGTERM: close every session, then cancel the ``async with`` block."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.signalled = signum
                log.warning("signal received; closing all sessions", signal=signum)
                await self.supervisor.close_all(reason=f"signal {signum}")
                # The caller's block runs inside this nursery's scope: cancelling it
                # ends the block; `signalled` tells the caller why.
                if self._nursery is not None:
                    self._nursery.cancel_scope.cancel()
                return

    async def _run_tools(
        self, session: Session, blocks: Sequence[Any], tool_types: Mapping[str, str] | None
    ) -> list[dict[str, Any]]:
        """``Session.run_tools``: a batch on this orchestrator's router."""
        return await self.router.run(session, blocks, tool_types=tool_types)

    async def _view_url(self, session: Session, interactive: bool) -> str:
        """``Session.view_url``: a link into this orchestrator's live view."""
        return await self.view.url_for(session, interactive=interactive)

    async def open_session(
        self, image: str | Snapshot | None = None, *, owner: str | None = None, **options: Any
    ) -> Session:
        """Start a session the caller must ``close()``; prefer ``session()``.

        ``options`` are the allow-listed sandbox options (``SandboxOptions``);
        ``owner`` records whom the session is for (the HTTP API's token owner).
        """
        if self._nursery is None:
            raise SessionError(
                "use `async with Orchestrator(...) as orch:` before opening sessions"
            )
        if image is not None:
            options["image"] = image.image if isinstance(image, Snapshot) else image
        parsed = parse_options(options, self.config)
        return await self.supervisor.open_session(parsed, owner=owner)

    @asynccontextmanager
    async def session(
        self, image: str | Snapshot | None = None, **options: Any
    ) -> AsyncIterator[Session]:
        """A session for the block: its sandbox is removed when the block ends.

        ``image`` may be a ``Snapshot`` (``await s.snapshot()``): the session is a fork.
        """
        session = await self.open_session(image, **options)
        try:
            yield session
        finally:
            await session.close()

    def get_session(self, session_id: str) -> Session:
        return self.supervisor.get(session_id)

    @property
    def sessions(self) -> list[Session]:
        return list(self.supervisor.sessions.values())

    async def run_tools(
        self, batches: Mapping[str, Sequence[Any]]
    ) -> dict[str, list[dict[str, Any]]]:
        """Tool batches in several sessions at once, keyed by session id.

        For evaluation runs driving many sandboxes per step; each session's
        batch follows the same rules as ``Session.run_tools``.
        """
        sessions = {self.get_session(session_id): blocks for session_id, blocks in batches.items()}
        return await self.router.run_many(sessions)

    async def agent(self, task: str, **options: Any) -> AgentResult:
        """Let Claude do ``task`` in a fresh sandbox; see ``orchestrator.agent.run_agent``."""
        from orchestrator.agent.loop import run_agent

        return await run_agent(self, task, **options)

    async def workflow(
        self, source: WorkflowSource, *, vars: Mapping[str, Any] | None = None, **options: Any
    ) -> WorkflowResult:
        """Run a YAML workflow (a path, YAML text, data or a ``Workflow``) to its end.

        ``vars`` override its declared variables; see ``orchestrator.workflows.run_workflow``
        for the other options.  ``LoadError`` for a file that does not load.
        """
        from orchestrator.workflows.runner import run_workflow

        return await run_workflow(self, source, vars=vars, **options)

    async def reap_orphans(self) -> int:
        return len(await self.supervisor.reap_orphans())
