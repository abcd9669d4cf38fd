"""Claude's ``memory`` tool (``memory_20250818``): files under ``/memories`` that outlive sessions.

Commands ``view``, ``create``, ``str_replace``, ``insert``, ``delete`` and
``rename``.  The store is a directory on the host per namespace
(``orchestrator.memory_store``), never mounted into the sandbox, which could
otherwise write it past its cap; the commands run in a guest of the
session's own on the host (``orchestrator.memory_guest``), confined to that
directory (neither ``..`` nor a symbolic link leads out), locked against other
sessions writing the same namespace, and refused once the namespace is full.  Messages follow
the ``anthropic`` SDK's reference implementation.
"""

from __future__ import annotations

import posixpath
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from orchestrator import protocol
from orchestrator.errors import GuestError
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client.responses import EditView
from orchestrator.memory_store import MEMORY_MOUNT
from orchestrator.tools.base import Resource, Tool, ToolContext, ToolError, ToolOutput
from orchestrator.tools.numbered import CLIPPED, human_size, number_lines, quote

__all__ = ["MemoryInput", "MemoryTool"]

COMMANDS = ("view", "create", "str_replace", "insert", "delete", "rename")
_REQUIRED = {
    "view": ("path",),
    "create": ("path", "file_text"),
    "str_replace": ("path", "old_str", "new_str"),
    "insert": ("path", "insert_line", "insert_text"),
    "delete": ("path",),
    "rename": ("old_path", "new_path"),
}


class MemoryInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command: str
    path: str | None = None
    view_range: Any = None
    file_text: str | None = None
    old_str: str | None = None
    new_str: str | None = None
    insert_line: int | None = None
    insert_text: str | None = None
    old_path: str | None = None
    new_path: str | None = None


def _count_note(details: dict[str, Any], lines: list[int]) -> str:
    """Say how many matches there are when some share a line (the list alone would hide it)."""
    count = int(details.get("count") or 0)
    return f" ({count} occurrences)" if count > len(lines) else ""


def check_memory_path(path: str) -> str:
    """``path`` if it names something under /memories; else the error the model reads."""
    if not path.startswith(MEMORY_MOUNT):
        raise ToolError(f"Path must start with {MEMORY_MOUNT}, got: {path}")
    normal = posixpath.normpath(path)
    if normal != MEMORY_MOUNT and not normal.startswith(MEMORY_MOUNT + "/"):
        raise ToolError(
            f"Path {path} would escape {MEMORY_MOUNT} directory; use a path under {MEMORY_MOUNT}/"
        )
    return path


class MemoryTool(Tool):
    name: ClassVar[str] = "memory"
    family: ClassVar[str] = "memory"
    types: ClassVar[tuple[str, ...]] = ("memory_20250818",)
    input_model: ClassVar[type[BaseModel]] = MemoryInput
    default_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        *,
        max_bytes: int = 64 << 20,
        max_file_bytes: int = 16 << 20,
        max_output_chars: int = 30_000,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_file_bytes = min(max_file_bytes, max_bytes)
        self.view_limit = max_output_chars

    def parse(self, tool_type: str, raw: dict[str, Any]) -> BaseModel:
        params = MemoryInput.model_validate(raw)
        if params.command not in COMMANDS:
            raise ToolError(
                f"Unknown command: {params.command}. The memory tool's commands are: "
                f"{', '.join(COMMANDS)}"
            )
        for field in _REQUIRED[params.command]:
            if getattr(params, field) is None:
                raise ToolError(
                    f"Error: missing required parameter '{field}' for command {params.command!r}"
                )
        for field in ("path", "old_path", "new_path"):
            value = getattr(params, field)
            if value is not None:
                check_memory_path(value)
        return params

    def resource(self, params: BaseModel) -> Resource:
        assert isinstance(params, MemoryInput)
        # One key for the whole store: a rename or delete touches more than one path.
        return Resource("memory", shared=params.command == "view")

    # -- running -------------------------------------------------------------------

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, MemoryInput)
        if ctx.session.memory_namespace is None:
            raise ToolError(
                "This session has no memory store at /memories: it was opened with "
                "memories=False (or memory.enabled is off). Open a session with the memory "
                "store to use the memory tool."
            )
        try:
            handler = getattr(self, f"_{params.command}")
            output: ToolOutput = await handler(ctx, params)
            return output
        except GuestError as exc:
            raise ToolError(self._explain(exc, params)) from None

    def _store(self) -> dict[str, Any]:
        """What every memory edit carries: the store, its quota and the file size cap."""
        return {"store": "memories", "max_file": self.max_file_bytes, "store_limit": self.max_bytes}

    async def _view(self, ctx: ToolContext, params: MemoryInput) -> ToolOutput:
        assert params.path is not None
        view_range = params.view_range
        if view_range is not None and (
            not isinstance(view_range, list)
            or len(view_range) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in view_range)
        ):
            raise ToolError("view_range must be a list of two integers: [start, end]")
        request = rq.EditViewRequest(
            path=params.path,
            max_bytes=self.view_limit * 4,
            lenient=True,
            range=view_range,
            **self._store(),
        )
        value, data = await (await ctx.session.memory_client()).edit_view(request)
        if value.type == "directory":
            return ToolOutput.text(self._render_tree(params.path, value))
        header = f"Here's the content of {params.path} with line numbers:\n"
        start = value.start
        body, last = number_lines(
            data.decode("utf-8", "replace"), start, max(200, self.view_limit - 400)
        )
        text = header + body
        end = value.lines if value.requested_end is None else value.requested_end
        if last < end:
            text += (
                f"\n{CLIPPED}<NOTE>Only lines {start}-{last} of {value.lines} are shown; "
                f"view the rest with view_range [{last + 1}, -1].</NOTE>"
            )
        return ToolOutput.text(text)

    def _render_tree(self, path: str, value: EditView) -> str:
        base = path.rstrip("/") or "/"
        lines = [
            f"Here're the files and directories up to 2 levels deep in {path}, "
            "excluding hidden items:",
            f"{human_size(value.size)}\t{base}",
        ]
        for entry in value.entries:
            suffix = "/" if entry.type == "directory" else ""
            lines.append(f"{human_size(entry.size)}\t{entry.path}{suffix}")
        text = "\n".join(lines)
        if value.truncated or len(text) > self.view_limit:
            text = text[: self.view_limit]
            text = text[: text.rfind("\n")] + (
                f"\n{CLIPPED}<NOTE>More entries than shown; view subdirectories one at a "
                "time.</NOTE>"
            )
        return text

    async def _create(self, ctx: ToolContext, params: MemoryInput) -> ToolOutput:
        assert params.path is not None
        assert params.file_text is not None
        await (await ctx.session.memory_client()).edit(
            rq.EditCreateRequest(path=params.path, **self._store()),
            params.file_text.encode("utf-8", "surrogateescape"),
        )
        return ToolOutput.text(f"File created successfully at: {params.path}")

    async def _str_replace(self, ctx: ToolContext, params: MemoryInput) -> ToolOutput:
        assert params.path is not None
        assert params.old_str is not None
        if params.old_str == "":
            raise ToolError("old_str must not be empty: give the exact text to replace")
        old = params.old_str.encode("utf-8", "surrogateescape")
        new = (params.new_str or "").encode("utf-8", "surrogateescape")
        value, data = await (await ctx.session.memory_client()).edit(
            rq.EditStrReplaceRequest(path=params.path, old_len=len(old), **self._store()),
            old + new,
        )
        snippet, _ = number_lines(
            data.decode("utf-8", "replace"), value.snippet_start, self.view_limit
        )
        return ToolOutput.text(
            "The memory file has been edited. Here is the snippet showing the change (with line "
            f"numbers):\n{snippet}"
        )

    async def _insert(self, ctx: ToolContext, params: MemoryInput) -> ToolOutput:
        assert params.path is not None
        assert params.insert_text is not None
        assert params.insert_line is not None
        await (await ctx.session.memory_client()).edit(
            rq.EditInsertRequest(path=params.path, line=params.insert_line, **self._store()),
            params.insert_text.encode("utf-8", "surrogateescape"),
        )
        return ToolOutput.text(f"The file {params.path} has been edited.")

    async def _delete(self, ctx: ToolContext, params: MemoryInput) -> ToolOutput:
        assert params.path is not None
        if posixpath.normpath(params.path) == MEMORY_MOUNT:
            raise ToolError(f"Cannot delete the {MEMORY_MOUNT} directory itself")
        await (await ctx.session.memory_client()).edit(
            rq.EditDeleteRequest(path=params.path, **self._store())
        )
        return ToolOutput.text(f"Successfully deleted {params.path}")

    async def _rename(self, ctx: ToolContext, params: MemoryInput) -> ToolOutput:
        assert params.old_path is not None
        assert params.new_path is not None
        if posixpath.normpath(params.old_path) == MEMORY_MOUNT:
            raise ToolError(f"Cannot rename the {MEMORY_MOUNT} directory itself")
        await (await ctx.session.memory_client()).edit(
            rq.EditRenameRequest(
                old_path=params.old_path, new_path=params.new_path, **self._store()
            )
        )
        return ToolOutput.text(f"Successfully renamed {params.old_path} to {params.new_path}")

    # -- errors ----------------------------------------------------------------------

    def _explain(self, exc: GuestError, params: MemoryInput) -> str:
        code = exc.details.get("code") or exc.code
        details = exc.details
        path = str(details.get("path") or params.path or params.old_path)
        command = params.command
        if code == protocol.E_NOT_FOUND:
            if details.get("reason") == "no_store":
                return (
                    "This session's sandbox has no memory store at /memories; open a session "
                    "with the memory store to use the memory tool."
                )
            if command in ("delete", "rename"):
                return f"The path {path} does not exist"
            return f"The path {path} does not exist. Please provide a valid path."
        if code == protocol.E_EXISTS:
            if command == "rename":
                return f"The destination {params.new_path} already exists"
            return f"File {path} already exists"
        if code == protocol.E_IS_DIRECTORY:
            return f"The path {path} is not a file."
        if code == protocol.E_PATH_NOT_ALLOWED:
            if details.get("reason") == "root":
                verb = "delete" if command == "delete" else "rename"
                return f"Cannot {verb} the {MEMORY_MOUNT} directory itself"
            return f"Path {path} would escape {MEMORY_MOUNT} directory via symlink"
        if code == protocol.E_NO_MATCH:
            return (
                f"No replacement was performed, old_str `{quote(params.old_str or '')}` did not "
                f"appear verbatim in {path}."
            )
        if code == protocol.E_AMBIGUOUS:
            lines = sorted(set(details.get("lines") or []))
            return (
                f"No replacement was performed. Multiple occurrences of old_str "
                f"`{quote(params.old_str or '')}` in lines: {', '.join(map(str, lines))}"
                f"{_count_note(details, lines)}. Please ensure it is unique"
            )
        if code == protocol.E_BAD_RANGE:
            return (
                f"Invalid `insert_line` parameter: {params.insert_line}. It should be within the "
                f"range [0, {details.get('lines', 0)}]."
            )
        if code == protocol.E_STORE_FULL:
            return (
                f"The memory store is full: it holds {details.get('used')} of its "
                f"{details.get('limit')} bytes and this change needs {details.get('needed')} "
                "more. Delete or shorten memories that are no longer useful, then retry."
            )
        if code == protocol.E_BINARY:
            return f"The file {path} is not UTF-8 text; the memory tool only stores text."
        if code == protocol.E_TOO_LARGE:
            return (
                f"{path} would be {details.get('size')} bytes, over the {details.get('limit')}-"
                "byte limit of one memory file; keep memories short."
            )
        if code == protocol.E_BAD_REQUEST and details.get("reason") == "into_itself":
            return f"Cannot move {params.old_path} into itself; choose another new_path"
        return str(exc)
