"""Code in a session's persistent interpreter, and what comes back (``Session.run_code``).

Python runs in a kernel the guest keeps per session (``sbx_guest/kernel.py``),
so variables, imports and files persist like in a notebook; bash runs in a
persistent shell of its own.  Either way the result is one ``CodeResult``:
output, return code, the value of a final expression, figures as PNG and the
files written under the outputs directory.  Everything goes through the
session; nothing here knows about containers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator import protocol
from orchestrator.config import CodeExecutionConfig
from orchestrator.errors import GuestFileNotFound, GuestNotADirectory, PathNotAllowed
from orchestrator.results import OutputChunk

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["BASH_SHELL", "CodeResult", "CodeStatus", "OutputFile", "run_code"]

BASH_SHELL = "code-execution"
"""The persistent shell ``language="bash"`` runs in (apart from the bash tool's)."""

CodeStatus = Literal["ok", "error", "exit", "interrupted", "timeout", "oom", "died", "cancelled"]
_STREAMS: dict[int, Literal["stdout", "stderr"]] = {
    protocol.STDOUT: "stdout",
    protocol.STDERR: "stderr",
}
OutputCallback = Callable[[OutputChunk], Awaitable[None] | None]


class OutputFile(BaseModel):
    """A file the code wrote (or changed) under the outputs directory."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int


class CodeResult(BaseModel):
    """How one ``run_code`` call ended.

    ``status`` says it in a word: ``ok``; ``error`` (an exception, its
    traceback on stderr); ``exit`` (``SystemExit``, the interpreter lives on);
    ``interrupted`` (the code raised ``KeyboardInterrupt`` itself); ``timeout``
    (ran out of time: interrupted with its state kept, or replaced when it
    would not stop -- see ``restarted``); ``oom`` (the interpreter ran out of memory
    and was replaced); ``died`` (it exited or crashed and was replaced);
    ``cancelled``.
    """

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    language: Literal["python", "bash"] = "python"
    status: CodeStatus
    return_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    result: str | None = None
    """The ``repr`` of the code's final expression, if it had one and it was not ``None``."""
    error_name: str | None = None
    error_value: str | None = None
    figures: list[bytes] = []
    """PNG images of the matplotlib figures the code left open (then closed)."""
    figures_dropped: int = 0
    files: list[OutputFile] = []
    files_more: int = 0
    """Output files written but not listed (a result names at most 500)."""
    timed_out: bool = False
    interrupted: bool = False
    """Stopped by an interrupt; the interpreter and its state survived."""
    restarted: bool = False
    """The interpreter was replaced during this call: variables and imports are gone."""
    oom_killed: bool = False
    cancelled: bool = False
    truncated: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")


async def _forward(chunk: OutputChunk, on_output: OutputCallback | None) -> None:
    if on_output is not None:
        maybe = on_output(chunk)
        if maybe is not None:
            await maybe


async def run_code(
    session: Session,
    code: str,
    *,
    language: Literal["python", "bash"],
    timeout: float,
    interpreter: str,
    on_output: OutputCallback | None,
    settings: CodeExecutionConfig,
    grace: float,
    max_output: int,
) -> CodeResult:
    if language == "bash":
        return await _run_bash(session, code, timeout, on_output, settings, max_output)
    if language != "python":
        raise ValueError(f"language must be 'python' or 'bash', not {language!r}")
    args: dict[str, Any] = {
        "name": interpreter,
        "timeout": timeout,
        "grace": grace,
        "max_output": max_output,
        "outputs": settings.outputs_dir,
        "max_figures": settings.max_figures,
    }
    stdout = bytearray()
    stderr = bytearray()
    async with session.guest_stream(
        protocol.OP_KERNEL_RUN,
        args,
        code.encode("utf-8", "replace"),
        timeout=timeout + 2 * grace + 30,
    ) as call:
        async for stream, data in call:
            (stdout if stream == protocol.STDOUT else stderr).extend(data)
            await _forward(OutputChunk(stream=_STREAMS.get(stream, "stdout"), data=data), on_output)
        value, payload = await call.result()
    figures: list[bytes] = []
    offset = 0
    for size in value.get("figures") or []:
        figures.append(payload[offset : offset + int(size)])
        offset += int(size)
    error = value.get("error") or {}
    status = value.get("status", "died")
    if value.get("timed_out") and status != "oom":
        status = "timeout"
    elif value.get("cancelled"):
        status = "cancelled"
    return CodeResult(
        language="python",
        status=status,
        return_code=int(value.get("return_code", 1)),
        stdout=bytes(stdout),
        stderr=bytes(stderr),
        result=value.get("result"),
        error_name=error.get("name"),
        error_value=error.get("value"),
        figures=figures,
        figures_dropped=int(value.get("figures_dropped") or 0),
        files=[OutputFile.model_validate(f) for f in value.get("files") or []],
        files_more=int(value.get("files_more") or 0),
        timed_out=bool(value.get("timed_out")),
        interrupted=bool(value.get("interrupted")),
        restarted=bool(value.get("restarted")),
        oom_killed=bool(value.get("oom_killed")),
        cancelled=bool(value.get("cancelled")),
        truncated=bool(value.get("truncated")),
        stdout_bytes=int(value.get("stdout_bytes") or 0),
        stderr_bytes=int(value.get("stderr_bytes") or 0),
        duration=float(value.get("duration") or 0.0),
    )


async def _outputs(session: Session, directory: str) -> dict[str, tuple[int, float]] | None:
    """path -> (size, mtime) under the outputs directory; ``None`` if it cannot be used."""
    try:
        entries = await session.list_files(directory, depth=32, hidden=True)
    except (GuestFileNotFound, GuestNotADirectory):
        return {}
    except PathNotAllowed:
        return None
    return {e.path: (e.size, e.mtime) for e in entries if e.type == "file"}


async def _run_bash(
    session: Session,
    code: str,
    timeout: float,
    on_output: OutputCallback | None,
    settings: CodeExecutionConfig,
    max_output: int,
) -> CodeResult:
    before = await _outputs(session, settings.outputs_dir)
    if before is not None:
        try:
            await session.mkdir(settings.outputs_dir)
        except PathNotAllowed:
            before = None
    result = await session.shell(
        code, name=BASH_SHELL, timeout=timeout, max_output=max_output, on_output=on_output
    )
    files: list[OutputFile] = []
    if before is not None:
        after = await _outputs(session, settings.outputs_dir) or {}
        files = [
            OutputFile(path=path, size=info[0])
            for path, info in sorted(after.items())
            if before.get(path) != info
        ]
    status: CodeStatus = "ok" if result.exit_code == 0 else "error"
    if result.timed_out:
        status = "timeout"
    elif result.cancelled:
        status = "cancelled"
    return CodeResult(
        language="bash",
        status=status,
        return_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        files=files,
        timed_out=result.timed_out,
        interrupted=result.timed_out and not result.shell_exited,
        restarted=result.shell_exited,
        oom_killed=result.oom_killed,
        cancelled=result.cancelled,
        truncated=result.truncated,
        stdout_bytes=result.stdout_bytes,
        stderr_bytes=result.stderr_bytes,
        duration=result.duration,
    )
