"""The MCP server: sbx's sandboxes and Claude's tools for any MCP client.

``serve_stdio`` is ``sbx mcp``; ``McpHttpEndpoint`` serves streamable HTTP at
``/mcp`` inside ``sbx serve --mcp``.  The sandboxes an MCP client creates
belong to its connection and are removed when it goes away.
"""

from orchestrator.mcp_server.http import McpHttpEndpoint
from orchestrator.mcp_server.sandboxes import ClientSandboxes
from orchestrator.mcp_server.server import build_server, serve_stdio

__all__ = ["ClientSandboxes", "McpHttpEndpoint", "build_server", "serve_stdio"]
