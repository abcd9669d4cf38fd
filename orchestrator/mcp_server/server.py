"""The MCP server of sbx: its tools on the ``mcp`` SDK's low-level ``Server``, and ``sbx mcp``.

``build_server`` answers ``tools/list`` from the catalogue and ``tools/call``
through ``calls``, on whichever ``ClientSandboxes`` the transport says the
request belongs to.  ``serve_stdio`` serves one client over the process's
stdin and stdout: the process is the connection, so when stdin ends (the
client exited or closed it), or on SIGINT/SIGTERM, calls in flight are
cancelled and every sandbox of the client is removed before the process
exits.  Logs go to stderr; stdout carries nothing but the protocol.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import anyio
import mcp_types as types
import structlog
import trio
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

from orchestrator import __version__
from orchestrator.backends.base import SandboxBackend
from orchestrator.config import Config
from orchestrator.errors import SbxError
from orchestrator.mcp_server.calls import call_tool, error_result
from orchestrator.mcp_server.catalog import tool_catalog
from orchestrator.mcp_server.sandboxes import ClientSandboxes
from orchestrator.runtime import Orchestrator

__all__ = ["ClientResolver", "build_server", "serve_stdio"]

log = structlog.get_logger("orchestrator.mcp")

ClientResolver = Callable[[ServerRequestContext[Any, Any]], ClientSandboxes]
"""Which client's sandboxes a request belongs to; raises ``SbxError`` if none."""

INSTRUCTIONS = (
    "sbx runs code in hardened sandboxes (Docker containers without network by default). "
    "Call sandbox_create first (image 'code-runner', or 'desktop' for the computer tool), then "
    "exec, read_file/write_file, bash, str_replace_based_edit_tool, code_execution or computer "
    "with its sandbox_id. Sandboxes are removed when this connection ends."
)


def build_server(orch: Orchestrator, resolve: ClientResolver) -> Server[Any]:
    """An MCP ``Server`` whose tools run in the sandboxes ``resolve`` picks per request."""
    catalog = tool_catalog(orch.router.registry)

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=catalog)

    async def run_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            sandboxes = resolve(ctx)
        except SbxError as exc:
            return error_result(str(exc))
        return await call_tool(sandboxes, params.name, params.arguments)

    server: Server[Any] = Server(
        "sbx",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=run_tool,
    )
    # Metrics go to Prometheus (/metrics); no OpenTelemetry span per message.
    server.middleware = []
    return server


class _WireLines:
    """The client's side of the stdio wire: lines in from one descriptor, out to another.

    trio streams rather than the SDK's threaded file reads, so that ending the
    server (a signal, the supervisor shutting down) is never stuck in a read.
    """

    def __init__(self, fd_in: int, fd_out: int, *, max_line: int) -> None:
        self.max_line = max_line
        """The longest message taken (bytes); a longer one ends the connection."""
        self._in = trio.lowlevel.FdStream(fd_in)
        self._out = trio.lowlevel.FdStream(fd_out)
        self._buffer = bytearray()
        self.ended = trio.Event()
        """Set when the client closes its end (stdin reaches EOF)."""

    async def lines(self) -> AsyncIterator[str]:
        try:
            while True:
                newline = self._buffer.find(b"\n")
                if newline >= 0:
                    line = bytes(self._buffer[: newline + 1])
                    del self._buffer[: newline + 1]
                    yield line.decode("utf-8", "replace")
                    continue
                if len(self._buffer) > self.max_line:
                    log.error(
                        "an MCP message is over the size limit; ending the connection "
                        "(send less per call, e.g. write a file in parts, or raise api.max_body)",
                        limit=self.max_line,
                    )
                    return
                try:
                    data = await self._in.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    return
                self._buffer += data
        finally:
            self.ended.set()

    def __aiter__(self) -> AsyncIterator[str]:
        return self.lines()

    async def write(self, text: str) -> None:
        try:
            await self._out.send_all(text.encode("utf-8"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()  # the client stopped reading: it is gone

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        # The descriptions are shared with whoever started us: leave them blocking.
        for stream in (self._in, self._out):
            with contextlib.suppress(OSError):
                os.set_blocking(stream.fileno(), True)
        with trio.CancelScope(shield=True):
            await self._in.aclose()
            await self._out.aclose()


async def serve_stdio(config: Config, *, backend: SandboxBackend | None = None) -> None:
    """``sbx mcp``: serve one MCP client on stdin/stdout until it goes away or a signal comes."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    # Nothing but the protocol may reach the client: stray reads see EOF, stray
    # writes go to stderr (the SDK's own stdio transport does the same).
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    wire = _WireLines(wire_in, wire_out, max_line=config.api.max_body)
    try:
        async with Orchestrator(config, backend=backend, handle_signals=True) as orch:
            sandboxes = ClientSandboxes(orch, owner=None, client="stdio")
            server = build_server(orch, lambda ctx: sandboxes)
            try:
                async with trio.open_nursery() as nursery:

                    async def end_when_client_leaves() -> None:
                        await wire.ended.wait()
                        # Sandboxes first (calls in flight end with them), then the loop.
                        await sandboxes.close_all("the MCP client disconnected")
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(end_when_client_leaves)
                    stdin = cast("anyio.AsyncFile[str]", wire)
                    async with stdio_server(stdin=stdin, stdout=stdin) as (read, write):
                        await server.run(read, write, server.create_initialization_options())
                    nursery.cancel_scope.cancel()
            finally:
                await sandboxes.close_all("the MCP client disconnected")
                log.info("MCP stdio client gone")
    finally:
        await wire.aclose()
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
