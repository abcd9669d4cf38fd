"""A workflow's own calls -- exec, persistent shell, put, get -- as tools the router runs.

Running them through the router, like Claude's tools, gives them the same
rules: the global and per-session call slots, the router's deadline, and the
session's resource locks, so a ``shell`` step and a ``bash`` tool call on the
same shell, or a ``put`` and an editor call on the same file, take turns in
the order they came.  Each returns a short text and hands the full result to
the workflow as an artifact (``RESULT``: the ``ExecResult`` as JSON; for
``get``, the file's bytes).  They are added to a router with
``ToolRouter.with_tools`` for a workflow's calls only; Claude never sees them.

Must not: interpret templates or decide whether a step failed (the runner does).
"""

from __future__ import annotations

import base64
import itertools
import posixpath
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.tools.base import Resource, Tool, ToolContext, ToolOutput

__all__ = [
    "EXEC_TOOL",
    "GET_TOOL",
    "PUT_TOOL",
    "RESULT",
    "SHELL_TOOL",
    "ExecInput",
    "GetInput",
    "PutInput",
    "ShellInput",
    "step_tools",
]

EXEC_TOOL = "workflow_exec"
SHELL_TOOL = "workflow_shell"
PUT_TOOL = "workflow_put"
GET_TOOL = "workflow_get"
RESULT = "result.json"
_MARGIN = 30.0
_calls = itertools.count()


def _file_key(path: str) -> str:
    """The same resource key the text editor uses for a file."""
    return f"file:{posixpath.normpath(path) if path.startswith('/') else path}"


class ExecInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str | list[str]
    timeout: float | None = Field(default=None, gt=0)
    cwd: str | None = None
    env: dict[str, str] | None = None
    stdin: str | None = None


class ShellInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str
    name: str = "workflow"
    timeout: float | None = Field(default=None, gt=0)


class PutInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    data_b64: str
    mode: int | None = None


class GetInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str


class _StepTool(Tool):
    types: ClassVar[tuple[str, ...]] = ("workflow",)

    def __init__(self, default_timeout: float) -> None:
        self.exec_timeout = default_timeout


class ExecTool(_StepTool):
    """A command in a new process (a shell string run by bash, or argv)."""

    name: ClassVar[str] = EXEC_TOOL
    family: ClassVar[str] = EXEC_TOOL
    input_model: ClassVar[type[BaseModel]] = ExecInput

    def resource(self, params: BaseModel) -> Resource:
        return Resource(f"exec:{next(_calls)}")  # a process of its own: nothing to wait for

    def timeout(self, params: BaseModel) -> float:
        assert isinstance(params, ExecInput)
        return (params.timeout or self.exec_timeout) + _MARGIN

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, ExecInput)
        result = await ctx.session.exec(
            params.command,
            timeout=params.timeout,
            cwd=params.cwd,
            env=params.env,
            stdin=params.stdin.encode("utf-8") if params.stdin is not None else None,
        )
        ctx.artifacts.append((RESULT, result.model_dump_json().encode()))
        return ToolOutput.text(f"exit code {result.exit_code}")


class ShellTool(_StepTool):
    """A command in the session's named persistent shell (cwd and variables persist)."""

    name: ClassVar[str] = SHELL_TOOL
    family: ClassVar[str] = SHELL_TOOL
    input_model: ClassVar[type[BaseModel]] = ShellInput

    def resource(self, params: BaseModel) -> Resource:
        assert isinstance(params, ShellInput)
        return Resource(f"shell:{params.name}")

    def timeout(self, params: BaseModel) -> float:
        assert isinstance(params, ShellInput)
        return (params.timeout or self.exec_timeout) + _MARGIN

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, ShellInput)
        result = await ctx.session.shell(params.command, name=params.name, timeout=params.timeout)
        ctx.artifacts.append((RESULT, result.model_dump_json().encode()))
        return ToolOutput.text(f"exit code {result.exit_code}")


class PutTool(_StepTool):
    """Write a file atomically (parents created)."""

    name: ClassVar[str] = PUT_TOOL
    family: ClassVar[str] = PUT_TOOL
    input_model: ClassVar[type[BaseModel]] = PutInput

    def resource(self, params: BaseModel) -> Resource:
        assert isinstance(params, PutInput)
        return Resource(_file_key(params.path))

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, PutInput)
        data = base64.b64decode(params.data_b64)
        await ctx.session.write_file(params.path, data, mode=params.mode)
        return ToolOutput.text(f"wrote {len(data)} bytes to {params.path}")


class GetTool(_StepTool):
    """Read a file back (its bytes are the artifact)."""

    name: ClassVar[str] = GET_TOOL
    family: ClassVar[str] = GET_TOOL
    input_model: ClassVar[type[BaseModel]] = GetInput

    def resource(self, params: BaseModel) -> Resource:
        assert isinstance(params, GetInput)
        return Resource(_file_key(params.path), shared=True)

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, GetInput)
        data = await ctx.session.read_file(params.path)
        ctx.artifacts.append((params.path, data))
        return ToolOutput.text(f"read {len(data)} bytes from {params.path}")


def step_tools(exec_timeout: float) -> list[Tool]:
    """The workflow's tools; ``exec_timeout`` is the default command timeout (for deadlines)."""
    return [
        ExecTool(exec_timeout),
        ShellTool(exec_timeout),
        PutTool(exec_timeout),
        GetTool(exec_timeout),
    ]
