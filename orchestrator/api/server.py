"""``sbx serve``: the HTTP API and the supervisor in one trio run, one nursery tree.

The address is taken before anything else starts, so a port in use is one
``ConfigError`` and no sandbox.  Shutdown (SIGINT/SIGTERM, or the caller's
``shutdown`` event) is graceful: the listener closes, requests in flight get
``api.graceful_timeout`` to finish (a second signal cuts that short), then
whatever is left is cancelled and every sandbox is removed before the
process exits; the last log line says what finished and what was cut.
SIGHUP, or a change of the config file, reloads what can change while
serving (``config_reload``).

It wires the pieces; it must not define routes or speak HTTP itself.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
import trio
from fastapi import FastAPI
from starlette.routing import Route

from orchestrator.api.agent_runs import AgentRuns
from orchestrator.api.app import create_app
from orchestrator.api.auth import Authenticator
from orchestrator.api.config_reload import ConfigReloader
from orchestrator.api.http_server import HttpServer, open_listeners
from orchestrator.api.state import ApiState
from orchestrator.backends.base import SandboxBackend
from orchestrator.config import Config, LoadedConfig
from orchestrator.metrics import PrometheusObserver
from orchestrator.runtime import Orchestrator

if TYPE_CHECKING:
    from orchestrator.mcp_server import McpHttpEndpoint

__all__ = ["serve_api"]

log = structlog.get_logger("orchestrator.api")


async def serve_api(
    config: Config,
    *,
    bind: str | None = None,
    backend: SandboxBackend | None = None,
    shutdown: trio.Event | None = None,
    handle_signals: bool = True,
    reload_from: LoadedConfig | None = None,
    reloader_ready: Callable[[ConfigReloader], None] | None = None,
    mcp: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set or a signal arrives; ``task_status`` gets the URL.

    ``reload_from`` (by default where ``load_config`` read ``config``) is read again
    on SIGHUP (with ``handle_signals``) and when its file changes; ``reloader_ready``
    is handed the reloader (tests reload through it and watch its outcomes).
    ``mcp`` also serves MCP (streamable HTTP) at ``/mcp``, under the same tokens.
    """
    reload_from = reload_from if reload_from is not None else config._loaded
    bind = bind or config.api.bind
    auth = Authenticator(config.api, bind)  # refuses an unsafe set-up before anything starts
    shutdown = shutdown if shutdown is not None else trio.Event()
    listeners = await open_listeners(bind)
    # The gauges read the orchestrator when scraped, after it exists.
    observer = PrometheusObserver(
        lambda: len(orch.sessions), spares=lambda: len(orch.supervisor.pool.spares())
    )
    orch = Orchestrator(config, backend=backend, observer=observer)
    observer.watch_resilience(orch.resilience)

    async with orch, trio.open_nursery() as nursery:
        runs = AgentRuns(orch, config.api.runs_dir)
        await nursery.start(runs.serve)
        state = ApiState(orch, config, auth, observer, runs)
        app = create_app(state)
        mcp_endpoint = await _mount_mcp(app, orch, config, state, nursery) if mcp else None
        server = HttpServer(
            app,
            graceful_timeout=config.api.graceful_timeout,
            head_timeout=config.api.head_timeout,
            body_timeout=config.api.body_timeout,
            max_connections=config.api.max_connections,
            keep_alive_timeout=config.api.keep_alive_timeout,
        )
        if handle_signals:
            nursery.start_soon(_watch_signals, shutdown, server)
        if reload_from is not None:
            reloader = ConfigReloader(
                state, bind, reload_from, pool_changed=orch.supervisor.pool.reconfigured
            )
            if reloader_ready is not None:
                reloader_ready(reloader)
            await nursery.start(reloader.watch_file, config.api.config_watch_interval)
            if handle_signals:
                await nursery.start(reloader.watch_signals)

        server_done = trio.Event()

        async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await server.serve(listeners, shutdown, task_status=task_status)
            finally:
                server_done.set()

        binds: list[str] = await nursery.start(run_server)
        url = binds[0]
        if orch.view.base_url is None:
            # Live view links point back at this server (its routes are mounted here).
            orch.view.base_url = url.replace("://0.0.0.0:", "://127.0.0.1:")
        log.info("serving the HTTP API", url=url, anonymous=auth.anonymous)
        task_status.started(url)
        await shutdown.wait()
        log.info(
            "shutting down: new connections refused, calls in flight may finish",
            graceful_timeout=config.api.graceful_timeout,
        )
        if mcp_endpoint is not None:  # their event streams would hold the drain open
            mcp_endpoint.end_all("the server is shutting down")
        # The server returns once in-flight requests finish or the grace period ends.
        with trio.move_on_after(config.api.graceful_timeout + 5):
            await server_done.wait()
        sessions = len(orch.sessions)
        nursery.cancel_scope.cancel()
    drain = server.drain
    if drain.cut:
        log.warning(
            "shutdown cut requests still running after the grace period",
            cut=drain.cut,
            graceful_timeout=config.api.graceful_timeout,
        )
    log.info(
        "HTTP API stopped; every sandbox removed",
        requests_finished=drain.finished,
        requests_cut=len(drain.cut),
        sessions_closed=sessions,
    )


async def _mount_mcp(
    app: FastAPI, orch: Orchestrator, config: Config, state: ApiState, nursery: trio.Nursery
) -> McpHttpEndpoint:
    """Serve MCP at ``/mcp``: a token's owner owns the MCP sessions it opens.  Tokens are
    looked up in ``state.auth`` on each request, so a reload's tokens hold here too."""
    from orchestrator.mcp_server import McpHttpEndpoint

    auth = state.auth

    def owner_of(header: str) -> str | None:
        principal = state.auth.lookup(header)
        return principal.owner if principal is not None else None

    endpoint = McpHttpEndpoint(
        orch,
        owner_of,
        idle_timeout=config.api.mcp_idle_timeout,
        max_sessions=config.api.mcp_max_sessions,
        loopback_hosts_only=auth.anonymous,
    )
    await nursery.start(endpoint.run)
    app.router.routes.append(Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"]))
    return endpoint


async def _watch_signals(shutdown: trio.Event, server: HttpServer) -> None:
    """The first SIGINT/SIGTERM starts a graceful shutdown; the next one cuts it short."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not shutdown.is_set():
                log.warning("signal received; shutting down", signal=signum)
                shutdown.set()
            else:
                log.warning("second signal: cutting the requests still running", signal=signum)
                server.cut_short()
