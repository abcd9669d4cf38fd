"""Claude's text editor: ``str_replace_based_edit_tool`` and the older ``str_replace_editor``.

Commands ``view`` (a file numbered like ``cat -n``, or a directory two levels
deep), ``create``, ``str_replace``, ``insert`` and -- in the
``str_replace_editor`` versions only -- ``undo_edit``.  The edits run in the
sandbox through the guest (``sbx_guest/textedit.py``): one read-modify-write,
written atomically, keeping the file's line endings, final newline and any
bytes that are not UTF-8.  Undo snapshots live in the guest, so they end with
the session.  Messages follow the reference implementation; every error says
what to do next.  Nothing here touches a host path.
"""

from __future__ import annotations

import posixpath
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from orchestrator import protocol
from orchestrator.errors import GuestError
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client.responses import EditView
from orchestrator.tools.base import Resource, Tool, ToolContext, ToolError, ToolOutput
from orchestrator.tools.numbered import CLIPPED, number_lines, quote

__all__ = ["EditorInput", "TextEditorTool"]

LEGACY_TYPES = ("text_editor_20250124", "text_editor_20241022")
"""The ``str_replace_editor`` versions: the ones with ``undo_edit``."""
COMMANDS = ("view", "create", "str_replace", "insert")


class EditorInput(BaseModel):
    """One editor call; which fields a command needs is checked per command."""

    model_config = ConfigDict(extra="ignore")

    command: str
    path: str
    file_text: str | None = None
    view_range: Any = None
    old_str: str | None = None
    new_str: str | None = None
    insert_line: int | None = None
    insert_text: str | None = None


def _commands(tool_type: str) -> tuple[str, ...]:
    return (*COMMANDS, "undo_edit") if tool_type in LEGACY_TYPES else COMMANDS


class TextEditorTool(Tool):
    name: ClassVar[str] = "str_replace_based_edit_tool"
    family: ClassVar[str] = "text_editor"
    types: ClassVar[tuple[str, ...]] = (
        "text_editor_20250728",
        "text_editor_20250429",
        "text_editor_20250124",
        "text_editor_20241022",
    )
    input_model: ClassVar[type[BaseModel]] = EditorInput
    default_timeout: ClassVar[float] = 120.0

    def __init__(
        self,
        *,
        undo_depth: int = 10,
        undo_max_bytes: int = 64 << 20,
        max_file_bytes: int = 16 << 20,
        max_characters: int | None = None,
        max_output_chars: int = 30_000,
        workdir: str = "/workspace",
    ) -> None:
        self.undo_depth = undo_depth
        self.undo_max_bytes = undo_max_bytes
        self.max_file_bytes = max_file_bytes
        self.max_characters = max_characters
        self.view_limit = max_characters or max_output_chars
        self.workdir = workdir

    def definition(self, tool_type: str, **options: Any) -> dict[str, Any]:
        # Advertised and enforced from one setting (editor.max_characters); only
        # text_editor_20250728 has the parameter at all.
        asked = options.pop("max_characters", None)
        if asked is not None and asked != self.max_characters:
            raise ValueError(
                f"max_characters={asked!r} differs from editor.max_characters = "
                f"{self.max_characters}, which is what views are cut to; set it in the "
                "configuration instead"
            )
        if tool_type == "text_editor_20250728" and self.max_characters:
            options["max_characters"] = self.max_characters
        name = "str_replace_editor" if tool_type in LEGACY_TYPES else self.name
        return {"type": tool_type, "name": name, **options}

    def parse(self, tool_type: str, raw: dict[str, Any]) -> BaseModel:
        params = EditorInput.model_validate(raw)
        allowed = _commands(tool_type)
        if params.command not in allowed:
            name = "str_replace_editor" if tool_type in LEGACY_TYPES else self.name
            raise ToolError(
                f"Unrecognized command {params.command}. The allowed commands for the {name} "
                f"tool are: {', '.join(allowed)}"
            )
        return params

    def resource(self, params: BaseModel) -> Resource:
        assert isinstance(params, EditorInput)
        key = posixpath.normpath(params.path) if params.path.startswith("/") else params.path
        return Resource(f"file:{key}", shared=params.command == "view")

    # -- running -------------------------------------------------------------------

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, EditorInput)
        path = params.path
        if not path.startswith("/"):
            workdir = ctx.session.options.workdir or self.workdir
            raise ToolError(
                f"The path {path} is not an absolute path, it should start with `/`. "
                f"Maybe you meant {posixpath.join(workdir, path)}?"
            )
        try:
            if params.command == "view":
                return await self._view(ctx, params)
            if params.command == "create":
                return await self._create(ctx, params)
            if params.command == "str_replace":
                return await self._str_replace(ctx, params)
            if params.command == "insert":
                return await self._insert(ctx, params)
            return await self._undo(ctx, params)
        except GuestError as exc:
            raise ToolError(self._explain(exc, params)) from None

    def _history(self, ctx: ToolContext) -> dict[str, Any]:
        """Undo snapshots only for the versions that can undo."""
        if ctx.tool_type not in LEGACY_TYPES:
            return {}
        return {"history": self.undo_depth, "history_bytes": self.undo_max_bytes}

    async def _view(self, ctx: ToolContext, params: EditorInput) -> ToolOutput:
        path = params.path
        view_range = params.view_range
        if view_range is not None and (
            not isinstance(view_range, list)
            or len(view_range) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in view_range)
        ):
            raise ToolError("Invalid `view_range`. It should be a list of two integers.")
        request = rq.EditViewRequest(
            path=path,
            max_file=self.max_file_bytes,
            max_bytes=self.view_limit * 4,
            range=view_range,
        )
        value, data = await ctx.session.client.edit_view(request)
        if value.type == "directory":
            if view_range is not None:
                raise ToolError(
                    "The `view_range` parameter is not allowed when `path` points to a directory."
                )
            return ToolOutput.text(self._render_tree(path, value))
        return ToolOutput.text(self._render_file(path, value, data))

    def _render_tree(self, path: str, value: EditView) -> str:
        header = (
            f"Here's the files and directories up to 2 levels deep in {path}, "
            "excluding hidden items:\n"
        )
        lines = [path.rstrip("/") or "/"]
        lines += [entry.path for entry in value.entries]
        body = "\n".join(lines)
        note = ""
        if value.truncated:
            note = (
                f"\n{CLIPPED}<NOTE>The directory holds more entries than are listed; view its "
                "subdirectories one at a time, or use `find` with bash.</NOTE>"
            )
        if len(header) + len(body) > self.view_limit:
            body = body[: max(0, self.view_limit - len(header))]
            body = body[: body.rfind("\n")] if "\n" in body else body
            note = (
                f"\n{CLIPPED}<NOTE>The listing was cut to {self.view_limit:,} characters; view "
                "its subdirectories one at a time to see the rest.</NOTE>"
            )
        return header + body + note + "\n"

    def _render_file(self, path: str, value: EditView, data: bytes) -> str:
        header = f"Here's the result of running `cat -n` on {path}:\n"
        total = value.lines
        if total == 0:
            return header + "(the file is empty)\n"
        start = value.start
        wanted_end = total if value.requested_end is None else value.requested_end
        text = data.decode("utf-8", "replace")
        body, last = number_lines(text, start, max(200, self.view_limit - len(header) - 400))
        last = min(last, value.end if "end" in value.model_fields_set else last)
        parts = [header, body, "\n"]
        if last < wanted_end:
            shown = f"lines {start}-{last}" if last >= start else f"the start of line {start}"
            parts.append(
                f"{CLIPPED}<NOTE>To save on context only part of this file has been shown to you "
                f"({shown} of {total}). View the rest with `view_range` [{max(last + 1, start)}, "
                f"{wanted_end if wanted_end != total else -1}], or search it with `grep -n` to "
                "find the line numbers of what you are looking for.</NOTE>\n"
            )
        if value.invalid:
            parts.append(
                f"(Note: {value.invalid} bytes of this file are not UTF-8 and are shown as "
                "\ufffd; edits leave them as they are.)\n"
            )
        return "".join(parts)

    async def _create(self, ctx: ToolContext, params: EditorInput) -> ToolOutput:
        if params.file_text is None:
            raise ToolError("Parameter `file_text` is required for command: create")
        await ctx.session.client.edit(
            rq.EditCreateRequest(
                path=params.path, max_file=self.max_file_bytes, **self._history(ctx)
            ),
            params.file_text.encode("utf-8", "surrogateescape"),
        )
        return ToolOutput.text(f"File created successfully at: {params.path}")

    async def _str_replace(self, ctx: ToolContext, params: EditorInput) -> ToolOutput:
        if params.old_str is None:
            raise ToolError("Parameter `old_str` is required for command: str_replace")
        if params.old_str == "":
            raise ToolError(
                "Parameter `old_str` must not be empty: give the exact text to replace, with "
                "enough surrounding lines to be unique (use `insert` to add text, `create` for a "
                "new file)."
            )
        old = params.old_str.encode("utf-8", "surrogateescape")
        new = (params.new_str or "").encode("utf-8", "surrogateescape")
        value, data = await ctx.session.client.edit(
            rq.EditStrReplaceRequest(
                path=params.path,
                old_len=len(old),
                max_file=self.max_file_bytes,
                **self._history(ctx),
            ),
            old + new,
        )
        snippet, _ = number_lines(
            data.decode("utf-8", "replace"), value.snippet_start, self.view_limit
        )
        return ToolOutput.text(
            f"The file {params.path} has been edited. Here's the result of running `cat -n` on "
            f"a snippet of {params.path}:\n{snippet}\n"
            "Review the changes and make sure they are as expected. Edit the file again if "
            "necessary."
        )

    async def _insert(self, ctx: ToolContext, params: EditorInput) -> ToolOutput:
        if params.insert_line is None:
            raise ToolError("Parameter `insert_line` is required for command: insert")
        text = params.insert_text
        if text is None:
            text = params.new_str
        elif params.new_str is not None and params.new_str != text:
            raise ToolError(
                "Give the text to insert once: `insert_text` and `new_str` differ; use "
                "`insert_text`."
            )
        if text is None:
            field = "new_str" if ctx.tool_type in LEGACY_TYPES else "insert_text"
            raise ToolError(f"Parameter `{field}` is required for command: insert")
        value, data = await ctx.session.client.edit(
            rq.EditInsertRequest(
                path=params.path,
                line=params.insert_line,
                max_file=self.max_file_bytes,
                **self._history(ctx),
            ),
            text.encode("utf-8", "surrogateescape"),
        )
        snippet, _ = number_lines(
            data.decode("utf-8", "replace"), value.snippet_start, self.view_limit
        )
        return ToolOutput.text(
            f"The file {params.path} has been edited. Here's the result of running `cat -n` on "
            f"a snippet of the edited file:\n{snippet}\n"
            "Review the changes and make sure they are as expected (correct indentation, no "
            "duplicate lines, etc). Edit the file again if necessary."
        )

    async def _undo(self, ctx: ToolContext, params: EditorInput) -> ToolOutput:
        value, data = await ctx.session.client.edit_undo(
            rq.EditUndoRequest(path=params.path, max_bytes=self.view_limit * 4)
        )
        note = ""
        if value.changed_since:
            note = (
                f"\n(Note: {params.path} had been changed by other means after that edit; those "
                "changes are undone too.)"
            )
        if value.restored == "removed":
            return ToolOutput.text(
                f"Last edit to {params.path} undone successfully: the file did not exist before "
                f"it was created, so it has been removed.{note}"
            )
        shown = EditView(
            lines=value.lines,
            start=1,
            end=value.lines if value.shown_lines is None else value.shown_lines,
            requested_end=value.lines,
        )
        rendered = self._render_file(params.path, shown, data)
        return ToolOutput.text(f"Last edit to {params.path} undone successfully. {rendered}{note}")

    # -- errors ----------------------------------------------------------------------

    def _explain(self, exc: GuestError, params: EditorInput) -> str:
        """The message the model reads for a failure inside the sandbox."""
        code = exc.details.get("code") or exc.code
        details = exc.details
        path = params.path
        if code == protocol.E_NOT_FOUND:
            return f"The path {path} does not exist. Please provide a valid path."
        if code == protocol.E_EXISTS:
            return (
                f"File already exists at: {path}. Cannot overwrite files using command `create`. "
                "Change it with `str_replace` or `insert` instead."
            )
        if code == protocol.E_IS_DIRECTORY:
            return (
                f"The path {path} is a directory and only the `view` command can be used on "
                "directories"
            )
        if code == protocol.E_BINARY:
            what = {
                "nul": "it contains NUL bytes",
                "encoding": f"{details.get('invalid', 'many')} of its bytes are not UTF-8",
                "special": "it is not a regular file",
            }.get(str(details.get("reason")), "it is not text")
            return (
                f"The file {path} is not a text file ({what}); the editor works on UTF-8 text "
                "only. Inspect it with bash instead (e.g. `file`, `xxd | head`)."
            )
        if code == protocol.E_TOO_LARGE:
            size, limit = details.get("size", "?"), details.get("limit", self.max_file_bytes)
            if params.command in ("str_replace", "insert", "create") and "edit would" in str(exc):
                return (
                    f"Nothing was written: the edit would make {path} {size} bytes, over the "
                    f"editor's limit of {limit} bytes."
                )
            return (
                f"The file {path} is {size} bytes, over the editor's limit of {limit} bytes. Look "
                "at parts of it with bash (`grep -n PATTERN`, `sed -n '100,200p'`) and edit it "
                "with bash tools, or split it."
            )
        if code == protocol.E_NO_MATCH:
            old = quote(params.old_str or "")
            message = (
                f"No replacement was performed, old_str `{old}` did not appear verbatim in {path}."
            )
            similar = details.get("similar_lines")
            if similar:
                where = (
                    f"Line {similar[0]} holds"
                    if len(similar) == 1
                    else f"Lines {', '.join(str(n) for n in similar)} hold"
                )
                message += (
                    f" {where} similar text that differs in whitespace or indentation: view it "
                    "and copy old_str exactly."
                )
            else:
                message += " View the file to copy the exact text, including whitespace."
            if details.get("style") == "mixed":
                message += " (The file mixes CRLF and LF line endings.)"
            return message
        if code == protocol.E_AMBIGUOUS:
            lines = sorted(set(details.get("lines") or []))
            count = int(details.get("count") or 0)
            more = " and more" if details.get("more") else ""
            if count > len(lines) and not more:
                more = f" ({count} occurrences)"
            return (
                f"No replacement was performed. Multiple occurrences of old_str "
                f"`{quote(params.old_str or '')}` in lines {lines}{more}. Please ensure it is "
                "unique by including more of the surrounding lines in old_str."
            )
        if code == protocol.E_BAD_RANGE:
            return self._range_message(params, details)
        if code == protocol.E_NO_HISTORY:
            message = f"No edit history found for {path}."
            if self.undo_depth == 0:
                message += " Undo is turned off here (editor.undo_depth = 0)."
            elif details.get("dropped"):
                message += (
                    " Older edits of it were forgotten to stay within the undo memory limit "
                    "(editor.undo_max_bytes)."
                )
            return message
        return str(exc)

    @staticmethod
    def _range_message(params: EditorInput, details: dict[str, Any]) -> str:
        total = details.get("lines", 0)
        if params.command == "insert":
            return (
                f"Invalid `insert_line` parameter: {params.insert_line}. It should be within the "
                f"range of lines of the file: {[0, total]}"
            )
        view_range = details.get("range") or params.view_range
        which = details.get("which")
        if which == "start":
            return (
                f"Invalid `view_range`: {view_range}. Its first element `{view_range[0]}` should "
                f"be within the range of lines of the file: {[1, total]}"
            )
        if which == "end":
            return (
                f"Invalid `view_range`: {view_range}. Its second element `{view_range[1]}` should "
                f"be smaller than the number of lines in the file: `{total}` (use -1 to view to "
                "the end)"
            )
        if which == "order":
            return (
                f"Invalid `view_range`: {view_range}. Its second element `{view_range[1]}` should "
                f"be larger or equal than its first `{view_range[0]}`"
            )
        return "Invalid `view_range`. It should be a list of two integers."
