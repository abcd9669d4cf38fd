"""One response model per guest operation: what the guest answers, checked.

The guest runs inside the sandbox, next to code that may be hostile, so its
answers are parsed rather than trusted: a field of the wrong type is a
``ProtocolError`` that names the operation, never a ``KeyError`` three
layers up.  Fields the host does not use are kept (``extra="allow"``) so a
newer guest's additions pass through to listings such as ``info``.

Must not: know about sessions, tools or HTTP.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.errors import ProtocolError
from orchestrator.results import FileInfo

__all__ = [
    "DesktopState",
    "EditSnippet",
    "EditUndone",
    "EditView",
    "FileListing",
    "GuestResponse",
    "InputDone",
    "KernelRunResult",
    "NovncFiles",
    "PointerAt",
    "ScreenshotTaken",
    "VncStarted",
    "parse_response",
]


class GuestResponse(BaseModel):
    """The ``r`` object of a successful result frame."""

    model_config = ConfigDict(frozen=True, extra="allow")

    @property
    def extra(self) -> dict[str, Any]:
        """Fields the guest sent that this model does not name."""
        return dict(self.__pydantic_extra__ or {})

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


ResponseT = TypeVar("ResponseT", bound=BaseModel)


def parse_response(op: str, model: type[ResponseT], value: dict[str, Any]) -> ResponseT:
    """``value`` as ``model``, or a ``ProtocolError`` naming the operation and the field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(the result)"
        raise ProtocolError(
            f"the guest's answer to {op} is malformed ({where}: {first['msg']}); the sandbox's "
            "guest does not match this orchestrator, or was tampered with -- close the session "
            "and rebuild the images with `sbx images build`"
        ) from None


class FileListing(GuestResponse):
    path: str
    entries: list[FileInfo] = []
    truncated: bool = False


class KernelError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    name: str | None = None
    value: str | None = None


class KernelFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    size: int


class KernelRunResult(GuestResponse):
    """How a cell ended; ``figures`` are the sizes of the PNGs in the payload, in order."""

    status: str = "died"
    return_code: int = 1
    result: str | None = None
    error: KernelError | None = None
    figures: list[int] = []
    figures_dropped: int = 0
    files: list[KernelFile] = []
    files_more: int = 0
    timed_out: bool = False
    interrupted: bool = False
    restarted: bool = False
    oom_killed: bool = False
    cancelled: bool = False
    truncated: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    duration: float = 0.0


class TreeEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    path: str
    type: str = "file"
    size: int = 0


class EditView(GuestResponse):
    """A file's lines ``start``..``end`` (the payload), or a directory's tree."""

    type: Literal["file", "directory"] = "file"
    path: str = ""
    size: int = 0
    lines: int = 0
    start: int = 1
    end: int = 0
    requested_end: int | None = None
    invalid: int = 0
    """Bytes of the file that are not UTF-8."""
    entries: list[TreeEntry] = []
    truncated: bool = False


class EditSnippet(GuestResponse):
    """An edit's result: the payload is the edited region, numbered from ``snippet_start``."""

    path: str = ""
    snippet_start: int = 1
    lines: int = 0


class EditUndone(GuestResponse):
    path: str = ""
    restored: Literal["removed", "content"] = "content"
    changed_since: bool = False
    lines: int = 0
    shown_lines: int | None = None


class DesktopState(GuestResponse):
    """The X server: ``state`` (running, dead, stopped), display, size and why it died."""

    state: str = "running"
    display: str | None = None
    width: int = 0
    height: int = 0
    depth: int = 24
    wm_running: bool | None = None
    seconds: float | None = None
    death: Any = None


class ScreenshotTaken(GuestResponse):
    """The PNG is the payload."""

    width: int
    height: int


class PointerAt(GuestResponse):
    x: int
    y: int


class InputDone(GuestResponse):
    cursor: list[int] = [0, 0]
    width: int = 0
    height: int = 0
    settled: bool | None = None
    changed: bool | None = None
    settle_ms: float | None = None
    ms: float | None = None


class VncStarted(GuestResponse):
    port: int


class NovncFiles(GuestResponse):
    """``(path, size)`` of each file, whose bytes follow one another in the payload."""

    files: list[tuple[str, int]] = []
