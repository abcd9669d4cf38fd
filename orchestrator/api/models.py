"""The HTTP API's request and response bodies (they make ``/openapi.json``).

Requests forbid unknown fields, so a typo is a 422 naming the field rather
than an option silently ignored.  Output bytes travel losslessly: as text
where they are UTF-8 and as base64 where they are not.  Models describe
bodies; they must not run anything.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.config import ByteSize
from orchestrator.results import ExecResult

__all__ = [
    "AgentRunCreate",
    "AgentRunInfo",
    "ErrorBody",
    "ErrorResponse",
    "ExecRequest",
    "ExecResponse",
    "FileEntry",
    "FileListing",
    "SessionCreate",
    "SessionInfo",
    "SessionList",
    "ToolsRequest",
    "ToolsResponse",
    "WorkflowRunRequest",
    "WorkflowRunResponse",
    "text_or_base64",
]

_Forbid = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    type: str = Field(description="Machine-readable kind, e.g. session_not_found.")
    message: str = Field(description="What went wrong and what to do about it.")
    remedy: str | None = Field(default=None, description="What to do, in one sentence.")
    retryable: bool = Field(
        default=False, description="Whether the same request may succeed if sent again."
    )
    retry_after: float | None = Field(
        default=None, description="When to send it again, s (also a Retry-After header)."
    )
    field: str | None = Field(default=None, description="The request field at fault, if any.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class SessionCreate(BaseModel):
    """A new sandbox session; unset fields take the server's configured defaults."""

    model_config = _Forbid

    image: str | None = Field(default=None, max_length=256, examples=["code-runner"])
    memory: ByteSize | None = Field(default=None, ge=16 << 20, examples=["1g"])
    cpus: float | None = Field(default=None, gt=0, le=256)
    pids_limit: int | None = Field(default=None, ge=16, le=1 << 16)
    network: bool | None = None
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = Field(default=None, max_length=4096)
    ttl: float | None = Field(default=None, gt=0, le=7 * 86400)
    idle_timeout: float | None = Field(default=None, gt=0, le=7 * 86400)
    restart_on_crash: bool | None = Field(
        default=None,
        description="Replace a lost sandbox with a fresh one (state lost; the next result "
        "says so) instead of leaving the session crashed.",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    tmpfs_sizes: dict[str, ByteSize] = Field(default_factory=dict)
    screen: str | None = Field(
        default=None, max_length=32, description="Desktop screen, WIDTHxHEIGHT[xDEPTH]."
    )
    desktop: bool | None = Field(default=None, description="Start the desktop (default: if any).")
    user: str | None = Field(
        default=None,
        pattern=r"^(root|[a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}(:[0-9]{1,10})?)$",
        description="Whom commands run as: 'root', a user of the image, or uid[:gid] "
        "(default: the image's USER unless root, else the server's sandbox.user).",
    )
    writable_root: bool | None = Field(
        default=None,
        description="A writable root filesystem (default: the server's sandbox.writable_root).",
    )
    memories: bool | None = Field(
        default=None, description="Mount your memory store at /memories (default: on)."
    )
    memory_namespace: str | None = Field(
        default=None, max_length=64, description="Which of your memory namespaces to mount."
    )

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=True)


class SessionInfo(BaseModel):
    id: str
    image: str
    state: str = Field(description="starting, ready, broken, crashed, closing or closed.")
    failure: str | None = Field(
        default=None, description="Why the session is broken or crashed (null while healthy)."
    )
    sandbox_id: str | None = Field(
        default=None, description="The engine's id of the session's sandbox (container)."
    )
    restarts: int = Field(
        default=0, description="Fresh sandboxes started in place of lost ones (restart_on_crash)."
    )
    last_restart: dict[str, Any] | None = Field(
        default=None, description="The last restart: at (epoch s), state, cause, sandbox."
    )
    owner: str | None = None
    created_at: float
    expires_at: float
    labels: dict[str, str] = Field(default_factory=dict)
    active_calls: int = 0


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class ExecRequest(BaseModel):
    model_config = _Forbid

    command: str | list[str] = Field(
        description="A shell string (run by bash) or an argv list (run as is).",
        examples=["echo hi", ["python3", "-c", "print(1)"]],
    )
    timeout: float | None = Field(default=None, gt=0, le=86400)
    cwd: str | None = Field(default=None, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)
    stdin: str | None = Field(default=None, description="Text for the command's stdin.")
    stdin_b64: str | None = Field(default=None, description="Bytes for stdin, base64.")
    max_output: int | None = Field(default=None, ge=1, le=64 << 20)
    user: str | None = Field(
        default=None,
        pattern=r"^(root|[a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}(:[0-9]{1,10})?)$",
        description="Run as 'root', a user of the image, or uid[:gid] (default: the session's).",
    )


def text_or_base64(data: bytes) -> tuple[str | None, str | None]:
    """``(text, None)`` for UTF-8 data, ``(None, base64)`` for anything else."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode("ascii")


def _output_bytes(text: str | None, b64: str | None) -> bytes:
    if b64 is not None:
        return base64.b64decode(b64)
    return text.encode("utf-8") if text is not None else b""


class ExecResponse(BaseModel):
    """The fields of ``ExecResult``; output as text, or base64 when it is not UTF-8."""

    exit_code: int
    stdout: str | None = None
    stderr: str | None = None
    stdout_b64: str | None = None
    stderr_b64: str | None = None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    oom_killed: bool = False
    truncated: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    duration: float = 0.0
    spawn_error: Literal["not_found", "permission_denied", "exec_failed"] | None = Field(
        default=None,
        description="The program could not be started (beside exit 127 or 126): not_found, "
        "permission_denied, or exec_failed.",
    )
    sandbox_restarted: str | None = Field(
        default=None,
        description="Set when the sandbox had been lost and replaced before this command "
        "(restart_on_crash): what happened; state from before is gone.",
    )

    def json_bytes(self) -> bytes:
        """The response body: compact JSON, UTF-8."""
        return self.__pydantic_serializer__.to_json(self)

    def to_result(self) -> ExecResult:
        """The library's ``ExecResult`` of this response: output back to bytes."""
        data = self.model_dump(exclude={"stdout", "stderr", "stdout_b64", "stderr_b64"})
        return ExecResult(
            stdout=_output_bytes(self.stdout, self.stdout_b64),
            stderr=_output_bytes(self.stderr, self.stderr_b64),
            **data,
        )

    @classmethod
    def from_result(cls, result: ExecResult) -> ExecResponse:
        out, out_b64 = text_or_base64(result.stdout)
        err, err_b64 = text_or_base64(result.stderr)
        data = result.model_dump(exclude={"stdout", "stderr", "shell_restarted", "shell_exited"})
        return cls(stdout=out, stdout_b64=out_b64, stderr=err, stderr_b64=err_b64, **data)


class ToolsRequest(BaseModel):
    model_config = _Forbid

    tool_uses: list[dict[str, Any]] = Field(
        max_length=256, description="Claude's tool_use blocks, as the Messages API gives them."
    )
    tool_types: dict[str, str] | None = Field(
        default=None, description="The advertised version per tool name, e.g. computer_20251124."
    )


class ToolsResponse(BaseModel):
    tool_results: list[dict[str, Any]]


class FileEntry(BaseModel):
    name: str
    path: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    target: str | None = None


class FileListing(BaseModel):
    path: str
    entries: list[FileEntry]


class AgentRunCreate(BaseModel):
    model_config = _Forbid

    task: str = Field(min_length=1, max_length=100_000)
    image: str | None = Field(default=None, max_length=256)
    model: str | None = Field(default=None, max_length=128)
    tools: list[str] = Field(default_factory=lambda: ["bash"], max_length=16)
    max_turns: int = Field(default=20, ge=1, le=500)
    max_tokens: int = Field(default=4096, ge=1, le=200_000)
    token_budget: int | None = Field(default=None, ge=1)
    system: str | None = Field(default=None, max_length=100_000)
    thinking_budget: int | None = Field(
        default=None,
        ge=1024,
        le=128_000,
        description="Extended thinking with this budget (under max_tokens).",
    )
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Messages API base URL (default: the server's); admin tokens only, or one "
        "of the server's agent.allowed_base_urls.",
    )


class AgentRunInfo(BaseModel):
    id: str
    status: Literal["running", "finished", "failed", "cancelled"]
    owner: str | None = None
    task: str
    session_id: str | None = None
    stop_reason: str | None = None
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    compactions: int = 0
    final_text: str | None = None
    error: str | None = None
    run_dir: str


class WorkflowRunRequest(BaseModel):
    """A workflow to run (the format of ``sbx workflow schema``) and its inputs."""

    model_config = _Forbid

    workflow: dict[str, Any] | str = Field(
        description="The workflow as JSON, or its YAML text (errors then name its lines).",
    )
    vars: dict[str, Any] = Field(default_factory=dict, description="Values of declared vars.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Values of declared secrets (never read from the server's environment); "
        "masked in every output and event.",
    )


class WorkflowRunResponse(BaseModel):
    ok: bool = Field(description="Every step that had to succeed did.")
    outputs: dict[str, Any]
    steps: dict[str, dict[str, Any]] = Field(
        description="By step id: status, seconds, attempts and the step's outputs."
    )
    seconds: float
    name: str | None = None
    error: str | None = None
