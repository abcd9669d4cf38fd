"""One request model per guest operation: the arguments as the guest reads them.

Each model names its operation (``op``) and turns itself into the ``a``
object of a ``req`` frame with ``wire()``.  Building every request here, in
one place, is what keeps the host's idea of an operation's arguments and the
guest's in step: nothing else in the orchestrator writes an argument dict.

Must not: know about sessions, tools or HTTP; validate policy (limits come
from the caller, already resolved from the configuration).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator import protocol
from orchestrator.guest_client.input_steps import InputStep

__all__ = [
    "ConnectRequest",
    "DesktopCursorRequest",
    "DesktopInputRequest",
    "DesktopNovncRequest",
    "DesktopScreenshotRequest",
    "DesktopStartRequest",
    "DesktopStatusRequest",
    "DesktopStopRequest",
    "DesktopVncRequest",
    "DirGetRequest",
    "DirPutRequest",
    "EditCreateRequest",
    "EditDeleteRequest",
    "EditInsertRequest",
    "EditRenameRequest",
    "EditStrReplaceRequest",
    "EditUndoRequest",
    "EditViewRequest",
    "ExecRequest",
    "FileListRequest",
    "FileMkdirRequest",
    "FileReadRequest",
    "FileRemoveRequest",
    "FileStatRequest",
    "FileWriteRequest",
    "GuestRequest",
    "InfoRequest",
    "KernelRestartRequest",
    "KernelRunRequest",
    "PingRequest",
    "SettleArgs",
    "ShellCloseRequest",
    "ShellRestartRequest",
    "ShellRunRequest",
    "ShotArgs",
    "TransferReadRequest",
    "TransferWriteRequest",
]


class GuestRequest(BaseModel):
    """The arguments of one operation; ``op`` says which."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: ClassVar[str]

    def wire(self) -> dict[str, Any]:
        """The ``a`` object of the request frame: unset options are left out."""
        return self.model_dump(exclude_none=True)


class PingRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_PING


class InfoRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_INFO


# -- commands ----------------------------------------------------------------------


class ExecRequest(GuestRequest):
    """A command: a shell string run by bash (``cmd``) or an argv run as is."""

    op: ClassVar[str] = protocol.OP_EXEC

    cmd: str | None = None
    argv: list[str] | None = None
    timeout: float
    max_output: int
    grace: float
    cwd: str | None = None
    env: dict[str, str] | None = None
    user: str | None = None
    """Whom to run it as (``root``, a name, ``uid[:gid]``); ``None``: the session's user."""
    stdin: bool | Literal["stream"] | None = None
    """``True``: the request's payload is the command's stdin; ``"stream"``: it follows as
    ``data`` frames, flow-controlled (input too large for one frame)."""
    window: int | None = None

    def wire(self) -> dict[str, Any]:
        # The hot path of every exec: a plain dict beats a generic dump by microseconds.
        args: dict[str, Any] = {
            "timeout": self.timeout,
            "max_output": self.max_output,
            "grace": self.grace,
        }
        if self.cmd is not None:
            args["cmd"] = self.cmd
        if self.argv is not None:
            args["argv"] = self.argv
        if self.cwd is not None:
            args["cwd"] = self.cwd
        if self.env:
            args["env"] = self.env
        if self.stdin:
            args["stdin"] = self.stdin
        if self.user is not None:
            args["user"] = self.user
        if self.window is not None:
            args["window"] = self.window
        return args


class ShellRunRequest(GuestRequest):
    """A command in a named persistent shell."""

    op: ClassVar[str] = protocol.OP_SHELL_RUN

    name: str
    command: str
    timeout: float
    max_output: int
    grace: float
    window: int | None = None
    user: str | None = None
    """Whom the shell runs as, when it starts (``None``: the session's user)."""


class ShellRestartRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_SHELL_RESTART

    name: str


class ShellCloseRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_SHELL_CLOSE

    name: str


class KernelRunRequest(GuestRequest):
    """Python code (the payload) in a named persistent interpreter."""

    op: ClassVar[str] = protocol.OP_KERNEL_RUN

    name: str
    timeout: float
    grace: float
    max_output: int
    outputs: str
    max_figures: int
    window: int | None = None


class KernelRestartRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_KERNEL_RESTART

    name: str


# -- files ------------------------------------------------------------------------


class FileReadRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_FILE_READ

    path: str
    offset: int = 0
    length: int | None = None
    max_bytes: int | None = None


class FileWriteRequest(GuestRequest):
    """The payload is the file's new content, written atomically."""

    op: ClassVar[str] = protocol.OP_FILE_WRITE

    path: str
    parents: bool = True
    overwrite: bool = True
    mode: int | None = None


class FileListRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_FILE_LIST

    path: str
    depth: int = 1
    hidden: bool = True


class FileStatRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_FILE_STAT

    path: str
    follow: bool = True


class FileMkdirRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_FILE_MKDIR

    path: str
    parents: bool = True
    exist_ok: bool = True


class FileRemoveRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_FILE_REMOVE

    path: str
    recursive: bool = False
    missing_ok: bool = False


# -- text edits (the editor and memory tools) ---------------------------------------


class _EditRequest(GuestRequest):
    """What every edit may carry: the store (``"memories"`` for /memories, else the
    allowed roots), its quota, the file size cap and the undo history to keep."""

    store: Literal["memories"] | None = None
    store_limit: int | None = None
    max_file: int | None = None
    history: int | None = None
    history_bytes: int | None = None


class EditViewRequest(_EditRequest):
    op: ClassVar[str] = protocol.OP_EDIT_VIEW

    path: str
    max_bytes: int | None = None
    range: list[int] | None = None
    """First and last line to show (``-1``: to the end)."""
    lenient: bool | None = None
    """Clamp a range past the end instead of refusing it."""


class EditCreateRequest(_EditRequest):
    """The payload is the file's text."""

    op: ClassVar[str] = protocol.OP_EDIT_CREATE

    path: str


class EditStrReplaceRequest(_EditRequest):
    """The payload is the old text (``old_len`` bytes) followed by the new."""

    op: ClassVar[str] = protocol.OP_EDIT_STR_REPLACE

    path: str
    old_len: int


class EditInsertRequest(_EditRequest):
    """The payload is the text inserted after line ``line``."""

    op: ClassVar[str] = protocol.OP_EDIT_INSERT

    path: str
    line: int


class EditUndoRequest(_EditRequest):
    op: ClassVar[str] = protocol.OP_EDIT_UNDO

    path: str
    max_bytes: int | None = None


class EditDeleteRequest(_EditRequest):
    op: ClassVar[str] = protocol.OP_EDIT_DELETE

    path: str


class EditRenameRequest(_EditRequest):
    op: ClassVar[str] = protocol.OP_EDIT_RENAME

    old_path: str
    new_path: str


# -- the desktop ---------------------------------------------------------------------


class SettleArgs(BaseModel):
    """Wait for the screen to stop changing: ``quiet_ms`` unchanged, ``timeout_ms`` at most."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quiet_ms: int
    timeout_ms: int


class ShotArgs(BaseModel):
    """The screenshot an input action ends with: ``size`` scales it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resample: str | None = None
    size: list[int] | None = None


class DesktopStartRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_DESKTOP_START

    width: int
    height: int
    depth: int
    display: int
    wm: str
    background: str
    timeout: float
    restart: bool = False


class DesktopStopRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_DESKTOP_STOP


class DesktopStatusRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_DESKTOP_STATUS


class DesktopScreenshotRequest(GuestRequest):
    """The screen (scaled to ``size``) or a region of it (``region``, ``upscale``)."""

    op: ClassVar[str] = protocol.OP_DESKTOP_SCREENSHOT

    resample: str | None = None
    size: list[int] | None = None
    region: list[int] | None = None
    upscale: int | None = None
    settle: SettleArgs | None = None


class DesktopInputRequest(GuestRequest):
    """Input steps (``move``, ``button``, ``key``, ``type``, ``sleep``), then optionally a
    settled screen and a screenshot."""

    op: ClassVar[str] = protocol.OP_DESKTOP_INPUT

    steps: list[InputStep]
    settle: SettleArgs | None = None
    screenshot: ShotArgs | None = None


class DesktopCursorRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_DESKTOP_CURSOR


class DesktopVncRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_DESKTOP_VNC

    view_only: bool
    port: int


class DesktopNovncRequest(GuestRequest):
    op: ClassVar[str] = protocol.OP_DESKTOP_NOVNC


# -- forwarded connections ---------------------------------------------------------


class ConnectRequest(GuestRequest):
    """A TCP connection to ``host:port`` inside the sandbox, carried by the channel."""

    op: ClassVar[str] = protocol.OP_NET_CONNECT

    host: str
    port: int
    timeout: float
    window: int


# -- streamed transfers (guest extension ``transfer``) --------------------------------


class _TransferRequest(GuestRequest):
    """A transfer's path, its deadline (``timeout`` s, then ``grace`` to stop) and its
    byte limit; the data itself streams (see ``guest_client.transfers``)."""

    path: str
    timeout: float
    grace: float
    limit: int


class TransferWriteRequest(_TransferRequest):
    op: ClassVar[str] = protocol.OP_TRANSFER_WRITE

    mode: int | None = None
    parents: bool = True
    overwrite: bool = True


class TransferReadRequest(_TransferRequest):
    op: ClassVar[str] = protocol.OP_TRANSFER_READ

    offset: int = 0
    length: int | None = None


class DirPutRequest(_TransferRequest):
    """A tar stream unpacked into the folder ``path`` (made if missing)."""

    op: ClassVar[str] = protocol.OP_TRANSFER_PUT_DIR


class DirGetRequest(_TransferRequest):
    """The folder ``path`` as a tar stream."""

    op: ClassVar[str] = protocol.OP_TRANSFER_GET_DIR
