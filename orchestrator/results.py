"""The values calls return: plain, immutable, serialisable.

Output stays ``bytes`` end to end -- a command's bytes are its own business --
and is decoded (with replacement) only for display, by ``stdout_text`` and
``stderr_text``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["ExecResult", "FileInfo", "OutputChunk"]


class ExecResult(BaseModel):
    """How a command (``exec`` or a persistent-shell command) ended."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    oom_killed: bool = False
    truncated: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_bytes: int = 0
    """Bytes the command wrote to stdout, including any dropped past the cap."""
    stderr_bytes: int = 0
    duration: float = 0.0
    shell_restarted: bool = False
    """For shell commands: the shell had died and this command ran in a fresh one."""
    shell_exited: bool = False
    """For shell commands: the command ended the shell (``exit``, a kill after a timeout)."""
    spawn_error: Literal["not_found", "permission_denied", "exec_failed"] | None = None
    """The program could not be started: no such program (exit 127), not executable
    (126), or another reason the kernel refused it (126, ``exec_failed``)."""
    sandbox_restarted: str | None = None
    """The session's sandbox had been lost and replaced by a fresh one before this command
    ran (``restart_on_crash``): what happened, and that the old state is gone."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @classmethod
    def from_guest(cls, value: dict[str, Any], stdout: bytes, stderr: bytes) -> ExecResult:
        fields = {key: value[key] for key in cls.model_fields if key in value}
        return cls.model_validate({**fields, "stdout": stdout, "stderr": stderr})


class OutputChunk(BaseModel):
    """A piece of a running command's output, as it streams."""

    model_config = ConfigDict(frozen=True)

    stream: Literal["stdout", "stderr"]
    data: bytes


class FileInfo(BaseModel):
    """One file or directory inside a sandbox."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    uid: int = 0
    gid: int = 0
    target: str | None = None
