"""What the MCP server offers: each tool's name, description and input schema.

Sandbox tools (``sandbox_create``, ``sandbox_list``, ``sandbox_close``) and
plain calls (``exec``, ``read_file``, ``write_file``) take the arguments of
the models below; Claude's tools (``bash``, ``str_replace_based_edit_tool``,
``computer``, ``code_execution``) take the input Claude sends them, whose
schema comes from the tool's own input model, plus ``sandbox_id``.
It must not run anything: ``calls`` does.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.tools.registry import ToolRegistry

__all__ = [
    "CLAUDE_TOOLS",
    "ExecArgs",
    "ReadFileArgs",
    "SandboxCloseArgs",
    "SandboxCreateArgs",
    "WriteFileArgs",
    "tool_catalog",
]

_SANDBOX_ID = {
    "type": "string",
    "description": "Which of your sandboxes (from sandbox_create); may be left out while you "
    "have exactly one.",
}


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxCreateArgs(_Args):
    image: str | None = Field(
        default=None,
        max_length=256,
        description="'code-runner' (Python, numpy, matplotlib; the default), 'desktop' (an X "
        "desktop for the computer tool), 'base', or a local image.",
    )
    memory: str | None = Field(default=None, description="Memory limit, e.g. '1g'.")
    cpus: float | None = Field(default=None, gt=0, description="CPU limit, e.g. 1.5.")
    pids_limit: int | None = Field(default=None, ge=16, description="Most processes at once.")
    network: bool | None = Field(default=None, description="Allow network access (default off).")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables.")
    workdir: str | None = Field(default=None, description="Working directory.")
    ttl: float | None = Field(default=None, gt=0, description="Remove after this many seconds.")
    idle_timeout: float | None = Field(
        default=None, gt=0, description="Remove after this many idle seconds."
    )
    screen: str | None = Field(default=None, description="Desktop screen, WIDTHxHEIGHT.")
    user: str | None = Field(default=None, description="'root', a user of the image, or uid.")
    writable_root: bool | None = Field(default=None, description="A writable root filesystem.")

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=True)


class SandboxCloseArgs(_Args):
    sandbox_id: str | None = Field(default=None, description=_SANDBOX_ID["description"])


class ExecArgs(_Args):
    command: str | list[str] = Field(
        description="A shell command line, or an argv list (run as is, no shell)."
    )
    sandbox_id: str | None = Field(default=None, description=_SANDBOX_ID["description"])
    cwd: str | None = Field(default=None, description="Working directory.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    stdin: str | None = Field(default=None, description="Text given to the command's stdin.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds before it is killed.")
    user: str | None = Field(default=None, description="Run as 'root', a user name, or uid.")


class ReadFileArgs(_Args):
    path: str = Field(description="Absolute path inside the sandbox.")
    sandbox_id: str | None = Field(default=None, description=_SANDBOX_ID["description"])
    encoding: Literal["utf-8", "base64"] = Field(
        default="utf-8", description="'utf-8' for text (default), 'base64' for any bytes."
    )
    offset: int = Field(default=0, ge=0, description="Byte offset to start at.")
    length: int | None = Field(default=None, ge=0, description="Most bytes to read.")


class WriteFileArgs(_Args):
    path: str = Field(description="Absolute path inside the sandbox; parents are created.")
    content: str = Field(description="The file's content, as text or base64 (see encoding).")
    sandbox_id: str | None = Field(default=None, description=_SANDBOX_ID["description"])
    encoding: Literal["utf-8", "base64"] = Field(default="utf-8")
    mode: int | None = Field(default=None, ge=0, le=0o7777, description="Permission bits.")


_PLAIN: dict[str, tuple[type[_Args] | None, str]] = {
    "sandbox_create": (
        SandboxCreateArgs,
        "Start a new hardened sandbox (a Docker container, no network by default) for this "
        "connection and return its sandbox_id. Every sandbox you create is removed when this "
        "MCP connection ends.",
    ),
    "sandbox_list": (None, "List the sandboxes of this connection: id, image and state."),
    "sandbox_close": (SandboxCloseArgs, "Remove a sandbox of this connection now."),
    "exec": (
        ExecArgs,
        "Run a command in a sandbox to completion; returns exit code, stdout and stderr.",
    ),
    "read_file": (ReadFileArgs, "Read a file from a sandbox."),
    "write_file": (WriteFileArgs, "Write a file in a sandbox (atomically)."),
}

CLAUDE_TOOLS: dict[str, str] = {
    "bash": "A persistent bash shell in a sandbox, as Claude's bash tool: give 'command', or "
    "'restart': true after a timeout. State (cwd, variables) persists between calls.",
    "str_replace_based_edit_tool": "Claude's text editor in a sandbox: 'command' is view "
    "(a file with line numbers, or a directory; optional view_range [start, end]), create "
    "(path, file_text), str_replace (path, old_str that occurs exactly once, new_str) or "
    "insert (path, insert_line, insert_text). Paths are absolute.",
    "computer": "Claude's computer-use tool on a sandbox's X desktop (open the sandbox with "
    "image 'desktop'): 'action' is screenshot, left_click, type, key, mouse_move, scroll, "
    "double_click, right_click, left_click_drag, cursor_position, wait, ...; coordinate is "
    "[x, y]. Actions answer with a screenshot image.",
    "code_execution": "Run Python (a persistent interpreter: variables persist; the last "
    "expression's value is returned; matplotlib figures come back as images) or bash "
    "(language 'bash') in a sandbox; 'restart': true starts afresh.",
}


def _object_schema(model: type[BaseModel] | None) -> dict[str, Any]:
    if model is None:
        return {"type": "object", "properties": {}, "additionalProperties": False}
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema


def _claude_schema(registry: ToolRegistry, name: str) -> dict[str, Any]:
    tool = registry.get(name)
    if tool is None:
        raise KeyError(f"the tool registry has no {name!r}")
    definition = tool.definition(tool.types[0])
    schema = copy.deepcopy(definition.get("input_schema") or tool.input_model.model_json_schema())
    schema.pop("title", None)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})["sandbox_id"] = dict(_SANDBOX_ID)
    return dict(schema)


def tool_catalog(registry: ToolRegistry) -> list[types.Tool]:
    """Every tool the MCP server lists, sandbox tools first."""
    tools = [
        types.Tool(name=name, description=description, input_schema=_object_schema(model))
        for name, (model, description) in _PLAIN.items()
    ]
    tools.extend(
        types.Tool(name=name, description=description, input_schema=_claude_schema(registry, name))
        for name, description in CLAUDE_TOOLS.items()
    )
    return tools


def plain_args_model(name: str) -> type[_Args] | None:
    """The arguments model of a plain tool (``None``: it takes none); ``KeyError`` if unknown."""
    return _PLAIN[name][0]
