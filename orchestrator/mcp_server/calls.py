"""One MCP ``tools/call``: run it on the client's sandboxes and answer a ``CallToolResult``.

Sandbox tools and plain calls go to the ``Session`` API; Claude's tools go
through the orchestrator's tool router, exactly as an agent's ``tool_use``
blocks do, and their ``tool_result`` content (text, screenshots, figures)
becomes MCP text and image content.  Anything that goes wrong -- bad
arguments, an unknown tool or sandbox, a failure in the sandbox -- is a
result with ``isError`` whose text names the cause and the fix, never a
protocol error.  It must not know the transport.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from pydantic import BaseModel, ValidationError

from orchestrator.errors import SbxError
from orchestrator.mcp_server.catalog import (
    CLAUDE_TOOLS,
    ExecArgs,
    ReadFileArgs,
    SandboxCloseArgs,
    SandboxCreateArgs,
    WriteFileArgs,
    plain_args_model,
)
from orchestrator.mcp_server.sandboxes import ClientSandboxes
from orchestrator.results import ExecResult

__all__ = ["call_tool", "error_result"]

_Handler = Callable[[ClientSandboxes, Any], Awaitable[types.CallToolResult]]


def error_result(message: str) -> types.CallToolResult:
    """A failed call, as the model reads it: one text naming cause and fix."""
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _text(text: str, structured: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text or "(no output)")], structured_content=structured
    )


def _describe_error(exc: SbxError) -> str:
    message = str(exc)
    remedy = getattr(exc, "remedy", "")
    if remedy and remedy != "see the message" and remedy not in message:
        message = f"{message} ({remedy})"
    return message


def _describe_invalid(name: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"{where}: {error['msg']}")
    return f"invalid arguments for {name}: " + "; ".join(problems) + " (tools/list has its schema)"


async def call_tool(
    sandboxes: ClientSandboxes, name: str, arguments: dict[str, Any] | None
) -> types.CallToolResult:
    """Run tool ``name`` with ``arguments`` for the client owning ``sandboxes``."""
    arguments = dict(arguments or {})
    try:
        if name in CLAUDE_TOOLS:
            return await _claude_tool(sandboxes, name, arguments)
        try:
            model = plain_args_model(name)
        except KeyError:
            known = ", ".join([*_HANDLERS, *CLAUDE_TOOLS])
            return error_result(f"unknown tool {name!r}; this server has: {known}")
        params: BaseModel | None = None
        if model is not None:
            try:
                params = model.model_validate(arguments)
            except ValidationError as exc:
                return error_result(_describe_invalid(name, exc))
        return await _HANDLERS[name](sandboxes, params)
    except SbxError as exc:
        return error_result(_describe_error(exc))


# -- sandboxes -----------------------------------------------------------------------------


async def _sandbox_create(sandboxes: ClientSandboxes, params: SandboxCreateArgs) -> Any:
    session = await sandboxes.create(params.options())
    info = {"sandbox_id": session.id, "image": session.image, "state": session.state}
    return _text(
        f"sandbox {session.id} ({session.image}) is ready; pass sandbox_id={session.id!r} to "
        "the other tools",
        info,
    )


async def _sandbox_list(sandboxes: ClientSandboxes, params: None) -> Any:
    listing = [
        {"sandbox_id": s.id, "image": s.image, "state": s.state, "expires_at": s.expires_at}
        for s in sandboxes.live()
    ]
    text = (
        "\n".join(f"{s['sandbox_id']}  {s['image']}  {s['state']}" for s in listing)
        if listing
        else "no sandboxes yet; sandbox_create opens one"
    )
    return _text(text, {"sandboxes": listing})


async def _sandbox_close(sandboxes: ClientSandboxes, params: SandboxCloseArgs) -> Any:
    closed = await sandboxes.close(params.sandbox_id)
    return _text(f"sandbox {closed} removed", {"sandbox_id": closed, "closed": True})


# -- plain calls ---------------------------------------------------------------------------


def _exec_text(result: ExecResult) -> str:
    lines = [f"exit code: {result.exit_code}"]
    if result.timed_out:
        lines.append("timed out: the command was killed (pass a larger timeout)")
    if result.oom_killed:
        lines.append("killed: out of memory (create the sandbox with more memory)")
    if result.stdout:
        lines.append("stdout:\n" + result.stdout.decode("utf-8", "replace").rstrip("\n"))
    if result.stderr:
        lines.append("stderr:\n" + result.stderr.decode("utf-8", "replace").rstrip("\n"))
    if result.truncated:
        lines.append("[output truncated; redirect it to a file and read that in parts]")
    if result.sandbox_restarted:
        lines.insert(0, result.sandbox_restarted)
    return "\n".join(lines)


async def _exec(sandboxes: ClientSandboxes, params: ExecArgs) -> Any:
    session = sandboxes.get(params.sandbox_id)
    result = await session.exec(
        params.command,
        timeout=params.timeout,
        cwd=params.cwd,
        env=params.env or None,
        stdin=params.stdin.encode("utf-8") if params.stdin is not None else None,
        user=params.user,
    )
    structured = {
        "exit_code": result.exit_code,
        "stdout": result.stdout.decode("utf-8", "replace"),
        "stderr": result.stderr.decode("utf-8", "replace"),
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "duration": round(result.duration, 4),
    }
    return _text(_exec_text(result), structured)


async def _read_file(sandboxes: ClientSandboxes, params: ReadFileArgs) -> Any:
    session = sandboxes.get(params.sandbox_id)
    data = await session.read_file(params.path, offset=params.offset, length=params.length)
    if params.encoding == "base64":
        return _text(base64.b64encode(data).decode("ascii"), None)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return error_result(
            f"{params.path} is not UTF-8 text ({len(data)} bytes); read it with encoding='base64'"
        )
    return types.CallToolResult(content=[types.TextContent(text=text)])


async def _write_file(sandboxes: ClientSandboxes, params: WriteFileArgs) -> Any:
    session = sandboxes.get(params.sandbox_id)
    if params.encoding == "base64":
        try:
            data = base64.b64decode(params.content, validate=True)
        except (binascii.Error, ValueError):
            return error_result(
                "content is not valid base64; send the bytes base64-encoded, or text with "
                "encoding='utf-8'"
            )
    else:
        data = params.content.encode("utf-8")
    await session.write_file(params.path, data, mode=params.mode)
    return _text(f"wrote {len(data)} bytes to {params.path}", {"path": params.path})


_HANDLERS: dict[str, _Handler] = {
    "sandbox_create": _sandbox_create,
    "sandbox_list": _sandbox_list,
    "sandbox_close": _sandbox_close,
    "exec": _exec,
    "read_file": _read_file,
    "write_file": _write_file,
}


# -- Claude's tools ------------------------------------------------------------------------


async def _claude_tool(
    sandboxes: ClientSandboxes, name: str, arguments: dict[str, Any]
) -> types.CallToolResult:
    sandbox_id = arguments.pop("sandbox_id", None)
    if sandbox_id is not None and not isinstance(sandbox_id, str):
        return error_result("sandbox_id must be a string (from sandbox_create)")
    session = sandboxes.get(sandbox_id)
    block = {"type": "tool_use", "id": f"mcp_{uuid.uuid4().hex}", "name": name, "input": arguments}
    [result] = await sandboxes.orch.router.run(session, [block])
    return tool_result_to_mcp(result)


def tool_result_to_mcp(result: dict[str, Any]) -> types.CallToolResult:
    """An Anthropic ``tool_result`` block as MCP content: text stays text, images stay images."""
    content = result.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks: list[types.ContentBlock] = []
    for part in content or []:
        if part.get("type") == "image":
            source = part.get("source", {})
            blocks.append(
                types.ImageContent(
                    data=source.get("data", ""), mime_type=source.get("media_type", "image/png")
                )
            )
        elif part.get("type") == "text":
            blocks.append(types.TextContent(text=part.get("text", "")))
        else:  # nothing else is produced today; keep it visible rather than drop it
            blocks.append(types.TextContent(text=json.dumps(part)))
    if not blocks:
        blocks.append(types.TextContent(text="(no output)"))
    return types.CallToolResult(content=blocks, is_error=bool(result.get("is_error", False)))
