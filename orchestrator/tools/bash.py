"""Claude's ``bash`` tool on the session's persistent shell.

One shell per session (cwd, variables and functions carry over between
calls).  A call that runs past the timeout is killed and answered with an
error telling the model to restart the tool, as the published tool
describes; ``restart: true`` really replaces the shell.  Output is clipped
to a size a model can take, keeping its head and tail, with a note saying so.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from orchestrator.results import ExecResult
from orchestrator.tools.base import Resource, Tool, ToolContext, ToolError, ToolOutput
from orchestrator.tools.text import clip

__all__ = ["BashInput", "BashTool"]

SHELL_NAME = "claude-bash"


class BashInput(BaseModel):
    """``{"command": "..."}`` or ``{"restart": true}``."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = None
    restart: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> BashInput:
        if not self.restart and self.command is None:
            raise ValueError(
                "give 'command' (the bash command to run) or 'restart': true to restart the shell"
            )
        return self


class BashTool(Tool):
    name: ClassVar[str] = "bash"
    family: ClassVar[str] = "bash"
    types: ClassVar[tuple[str, ...]] = ("bash_20250124", "bash_20241022")
    input_model: ClassVar[type[BaseModel]] = BashInput

    def __init__(self, *, timeout: float = 120.0, max_output_chars: int = 30_000) -> None:
        self.command_timeout = timeout
        self.max_output_chars = max_output_chars

    def resource(self, params: BaseModel) -> Resource:
        return Resource(f"shell:{SHELL_NAME}")

    def timeout(self, params: BaseModel) -> float:
        # The shell enforces command_timeout itself; this only guards a stuck sandbox.
        return self.command_timeout + 30.0

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, BashInput)
        session = ctx.session
        if params.restart:
            await session.restart_shell(SHELL_NAME)
            return ToolOutput.text("tool has been restarted.")
        assert params.command is not None
        result = await session.shell(params.command, name=SHELL_NAME, timeout=self.command_timeout)
        if result.timed_out:
            partial = _render(result, self.max_output_chars)
            raise ToolError(
                f"timed out: bash has not returned in {self.command_timeout:g} seconds and must "
                "be restarted (call the tool with restart: true). Run long jobs in the "
                "background with output to a file, e.g. `cmd > /tmp/out.log 2>&1 &`."
                + (f"\nOutput before the timeout:\n{partial}" if partial.strip() else "")
            )
        return ToolOutput.text(_render(result, self.max_output_chars))


def _render(result: ExecResult, limit: int) -> str:
    parts: list[str] = []
    if result.shell_restarted:
        parts.append(
            "(the previous shell had exited, so this ran in a new one: the working directory "
            "and variables from before are gone)"
        )
    out = result.stdout_text
    err = result.stderr_text
    if out:
        parts.append(out.rstrip("\n"))
    if err:
        parts.append(err.rstrip("\n") if not out else "stderr:\n" + err.rstrip("\n"))
    if result.truncated:
        parts.append(
            f"[output truncated by the sandbox after {max(len(result.stdout), len(result.stderr))}"
            " bytes; redirect it to a file and read the file in parts]"
        )
    if result.exit_code != 0:
        parts.append(f"[exit code {result.exit_code}]")
    if result.oom_killed:
        parts.append(
            "[out of memory: the sandbox's memory ran out and the kernel killed a process of "
            "this command; use less memory, or work in smaller pieces]"
        )
    if result.shell_exited and not result.timed_out:
        parts.append("(the command ended the shell; the next command starts a new one)")
    text = "\n".join(parts)
    return clip(text, limit, hint="redirect the output to a file and read it in parts")
