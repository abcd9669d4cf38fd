"""``sbx mcp``: an MCP server on stdin/stdout, for desktop MCP clients that start it."""

from __future__ import annotations

import argparse

import trio

from orchestrator.config import Config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mcp = sub.add_parser(
        "mcp",
        help="serve MCP on stdin/stdout (sandboxes, exec, files, Claude's tools)",
        description="Serve the Model Context Protocol on stdin/stdout for one client (an MCP "
        "client starts this command). The sandboxes it creates are removed when it "
        "disconnects. For MCP over HTTP, see `sbx serve --mcp`.",
    )
    mcp.set_defaults(handler=_mcp)


def _mcp(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.mcp_server import serve_stdio

    trio.run(serve_stdio, config)
    return 0
