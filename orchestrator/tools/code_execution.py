"""``code_execution``: our own client tool for running code in the session's interpreter.

Anthropic's ``code_execution_*`` tools are server tools that run in
Anthropic's cloud; this one is a custom tool (name, description, input
schema) that runs in the session's sandbox and answers with the same fields:
``stdout``, ``stderr`` and ``return_code``, plus the value of a final
expression, the files written under the outputs directory, and matplotlib
figures as PNG image blocks.  Python runs in a persistent interpreter, like a
notebook; ``language: bash`` in a persistent shell; ``restart: true`` starts
the interpreter afresh.  A timeout, running out of memory or a crashed
interpreter is an ``is_error`` result that says what happened to the state.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from orchestrator.interpreter import BASH_SHELL, CodeResult
from orchestrator.tools.base import Resource, Tool, ToolContext, ToolOutput
from orchestrator.tools.numbered import human_size
from orchestrator.tools.text import clip
from orchestrator.tools.versions import CODE_EXECUTION_TYPE

__all__ = ["CodeExecutionInput", "CodeExecutionTool"]

DESCRIPTION = (
    "Run code in a persistent sandbox and see its output. Python runs in one long-lived "
    "interpreter, like a notebook: variables, imports and files persist between calls, and the "
    "value of the last expression is returned. matplotlib figures are returned as images. Files "
    "written under {outputs} are listed in the result. Set language to 'bash' for shell "
    "commands (a persistent shell). Each call times out after {timeout:g} seconds; set restart to "
    "true to start a fresh interpreter."
)


class CodeExecutionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str | None = None
    language: Literal["python", "bash"] = "python"
    restart: bool = False

    @model_validator(mode="after")
    def _something_to_do(self) -> CodeExecutionInput:
        if self.code is None and not self.restart:
            raise ValueError(
                "give 'code' (the code to run) or 'restart': true to restart the interpreter"
            )
        return self


class CodeExecutionTool(Tool):
    name: ClassVar[str] = "code_execution"
    family: ClassVar[str] = "code_execution"
    types: ClassVar[tuple[str, ...]] = (CODE_EXECUTION_TYPE,)
    input_model: ClassVar[type[BaseModel]] = CodeExecutionInput

    def __init__(
        self,
        *,
        tool_name: str = "code_execution",
        timeout: float = 60.0,
        outputs_dir: str = "/workspace/outputs",
        grace: float = 2.0,
        max_output_chars: int = 30_000,
    ) -> None:
        self.advertised_name = tool_name
        self.aliases: tuple[str, ...] = (tool_name,) if tool_name != self.name else ()
        """Calls under the advertised name route here, and so do calls named code_execution."""
        self.code_timeout = timeout
        self.outputs_dir = outputs_dir
        self.grace = grace
        self.max_output_chars = max_output_chars

    def definition(self, tool_type: str, **options: Any) -> dict[str, Any]:
        return {
            "type": CODE_EXECUTION_TYPE,
            "name": self.advertised_name,
            "description": DESCRIPTION.format(outputs=self.outputs_dir, timeout=self.code_timeout),
            "input_schema": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": "The code to run."},
                    "language": {
                        "type": "string",
                        "enum": ["python", "bash"],
                        "description": "python (default) or bash.",
                    },
                    "restart": {
                        "type": "boolean",
                        "description": "Start a fresh interpreter (all variables are lost).",
                    },
                },
            },
            **options,
        }

    def resource(self, params: BaseModel) -> Resource:
        # Python and bash calls share files: keep a batch's calls in order.
        return Resource("code_execution")

    def timeout(self, params: BaseModel) -> float:
        return self.code_timeout + 2 * self.grace + 45.0

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, CodeExecutionInput)
        session = ctx.session
        if params.restart:
            if params.language == "bash":
                await session.restart_shell(BASH_SHELL)
            else:
                await session.restart_interpreter()
            if params.code is None:
                what = "bash shell" if params.language == "bash" else "Python interpreter"
                return ToolOutput.text(f"The {what} was restarted; earlier variables are gone.")
        assert params.code is not None
        result = await session.run_code(
            params.code, language=params.language, timeout=self.code_timeout
        )
        return self.render(result)

    def render(self, result: CodeResult) -> ToolOutput:
        parts: list[str] = []
        if result.stdout:
            parts.append(result.stdout_text.rstrip("\n"))
        if result.stderr:
            parts.append("stderr:\n" + result.stderr_text.rstrip("\n"))
        if result.truncated:
            parts.append(
                "[output truncated by the sandbox; write large output to a file and read it in "
                "parts]"
            )
        if result.result is not None:
            joiner = "\n" if "\n" in result.result else " "
            parts.append(f"result:{joiner}{result.result}")
        if result.files:
            listed = "\n".join(f"  {f.path} ({human_size(f.size)})" for f in result.files)
            if result.files_more:
                listed += f"\n  ... and {result.files_more} more"
            parts.append(f"files written under {self.outputs_dir}:\n{listed}")
        if result.figures:
            parts.append(f"[{len(result.figures)} figure(s) attached as images]")
        if result.figures_dropped:
            parts.append(f"[{result.figures_dropped} more figure(s) not returned]")
        problem = self._problem(result)
        if problem:
            parts.append(problem)
        elif result.restarted:
            parts.append(
                "(the code ended the shell; the next call starts a new one, so its variables and "
                "working directory are reset)"
            )
        parts.append(f"return_code: {result.return_code}")
        text = clip(
            "\n".join(parts),
            self.max_output_chars,
            hint="print less, or write output to a file and read it in parts",
        )
        output = ToolOutput.text(text, is_error=problem is not None)
        if not output.is_error:
            for figure in result.figures:
                output.add_image(figure, "image/png")
        return output

    def _problem(self, result: CodeResult) -> str | None:
        """What went wrong with the *execution* (not the code's own exceptions), if anything."""
        lost = "variables and imports from earlier calls are gone."
        stopped = result.timed_out or result.cancelled
        if result.oom_killed and stopped:
            # A process ran out of memory, and then the run was stopped: say both.
            cause = "timed out" if result.timed_out else "was cancelled"
            kept = lost if result.restarted else "the interpreter and its variables are kept."
            return (
                f"error: out_of_memory — a process the code started ran out of the sandbox's "
                f"memory and was killed, and the run {cause}; {kept}"
            )
        if result.oom_killed and result.restarted:
            return (
                "error: out_of_memory — the code used more memory than the sandbox allows, so "
                f"the interpreter was killed and restarted; {lost} Work in smaller pieces or free "
                "memory (del, gc.collect())."
            )
        if result.oom_killed:
            return (
                "error: out_of_memory — a process the code started ran out of the sandbox's "
                "memory and was killed; the interpreter and its variables are kept. Use less "
                "memory in it, or work in smaller pieces."
            )
        if result.timed_out and result.restarted:
            return (
                f"error: execution_time_exceeded — the code ran past the {self.code_timeout:g} s "
                f"timeout and did not stop when interrupted, so the interpreter was restarted; "
                f"{lost}"
            )
        if result.timed_out:
            return (
                f"error: execution_time_exceeded — the code ran past the {self.code_timeout:g} s "
                "timeout and was interrupted; the interpreter and its state are kept. Make it "
                "faster, or run long jobs in the background and check on them."
            )
        if result.cancelled:
            return "error: the call was cancelled before the code finished."
        if result.restarted and result.language == "bash":
            return None  # `exit` in the shell: said in a note, not a failure
        if result.restarted:
            return (
                f"error: the interpreter exited (return code {result.return_code}) and was "
                f"restarted; {lost}"
            )
        return None
