"""Code in a session's persistent interpreter, and what comes back (``Session.run_code``).

Python runs in a kernel the guest keeps per session (``sbx_guest/kernel.py``),
so variables, imports and files persist like in a notebook; bash runs in a
persistent shell of its own.  Either way the result is one ``CodeResult``:
output, return code, the value of a final expression, figures as PNG and the
files written under the outputs directory.  Everything goes through the
session's guest client; nothing here knows about sessions or containers.
"""

from __future__ import annotations

from typing import Literal, cast

from pydantic import BaseModel, ConfigDict

from orchestrator import protocol
from orchestrator.config import CodeExecutionConfig
from orchestrator.errors import GuestFileNotFound, GuestNotADirectory, PathNotAllowed
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client import responses as rs
from orchestrator.guest_client.client import GuestClient
from orchestrator.guest_client.exec_stream import STREAM_NAMES, OutputCallback, forward_output
from orchestrator.results import OutputChunk

__all__ = ["BASH_SHELL", "CodeResult", "CodeStatus", "OutputFile", "run_code"]

BASH_SHELL = "code-execution"
"""The persistent shell ``language="bash"`` runs in (apart from the bash tool's)."""

CodeStatus = Literal["ok", "error", "exit", "interrupted", "timeout", "oom", "died", "cancelled"]


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


async def run_code(
    client: GuestClient,
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
        return await _run_bash(client, code, timeout, on_output, settings, grace, max_output)
    if language != "python":
        raise ValueError(f"language must be 'python' or 'bash', not {language!r}")
    request = rq.KernelRunRequest(
        name=interpreter,
        timeout=timeout,
        grace=grace,
        max_output=max_output,
        outputs=settings.outputs_dir,
        max_figures=settings.max_figures,
    )
    stdout = bytearray()
    stderr = bytearray()
    async with client.stream(
        request, code.encode("utf-8", "replace"), timeout=client.allowance(timeout)
    ) as call:
        async for stream, data in call:
            (stdout if stream == protocol.STDOUT else stderr).extend(data)
            chunk = OutputChunk(stream=STREAM_NAMES.get(stream, "stdout"), data=data)
            await forward_output(chunk, on_output)
        value, payload = await call.result()
    ended = rs.parse_response(request.op, rs.KernelRunResult, value)
    figures: list[bytes] = []
    offset = 0
    for size in ended.figures:
        figures.append(payload[offset : offset + size])
        offset += size
    error = ended.error or rs.KernelError()
    status = ended.status
    if ended.timed_out and status != "oom":
        status = "timeout"
    elif ended.cancelled:
        status = "cancelled"
    return CodeResult(
        language="python",
        status=cast(CodeStatus, status) if status in _STATUSES else "died",
        return_code=ended.return_code,
        stdout=bytes(stdout),
        stderr=bytes(stderr),
        result=ended.result,
        error_name=error.name,
        error_value=error.value,
        figures=figures,
        figures_dropped=ended.figures_dropped,
        files=[OutputFile(path=f.path, size=f.size) for f in ended.files],
        files_more=ended.files_more,
        timed_out=ended.timed_out,
        interrupted=ended.interrupted,
        restarted=ended.restarted,
        oom_killed=ended.oom_killed,
        cancelled=ended.cancelled,
        truncated=ended.truncated,
        stdout_bytes=ended.stdout_bytes,
        stderr_bytes=ended.stderr_bytes,
        duration=ended.duration,
    )


_STATUSES: frozenset[str] = frozenset(CodeStatus.__args__)  # type: ignore[attr-defined]


async def _outputs(client: GuestClient, directory: str) -> dict[str, tuple[int, float]] | None:
    """path -> (size, mtime) under the outputs directory; ``None`` if it cannot be used."""
    try:
        entries = await client.list_files(rq.FileListRequest(path=directory, depth=32))
    except (GuestFileNotFound, GuestNotADirectory):
        return {}
    except PathNotAllowed:
        return None
    return {e.path: (e.size, e.mtime) for e in entries if e.type == "file"}


async def _run_bash(
    client: GuestClient,
    code: str,
    timeout: float,
    on_output: OutputCallback | None,
    settings: CodeExecutionConfig,
    grace: float,
    max_output: int,
) -> CodeResult:
    before = await _outputs(client, settings.outputs_dir)
    if before is not None:
        try:
            await client.mkdir(rq.FileMkdirRequest(path=settings.outputs_dir))
        except PathNotAllowed:
            before = None
    request = rq.ShellRunRequest(
        name=BASH_SHELL, command=code, timeout=timeout, max_output=max_output, grace=grace
    )
    result = await client.shell(request, on_output)
    files: list[OutputFile] = []
    if before is not None:
        after = await _outputs(client, settings.outputs_dir) or {}
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
