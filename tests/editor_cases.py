"""The text editor's behaviour as a table, run against the fake backend and real sandboxes.

Each case writes some files, makes editor calls in order, and checks the
last call's result (error or not, text it contains) and the files after it.
``{ws}`` in paths and expected text stands for the directory the case runs
in (a temp dir under the fake backend, ``/workspace/...`` in a sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .toolcalls import result_text, use

NEW = "text_editor_20250728"
LEGACY = "text_editor_20250124"
TEN = "".join(f"line {n}\n" for n in range(1, 11)).encode()


@dataclass
class Case:
    id: str
    calls: list[dict[str, Any]]
    files: dict[str, bytes] = field(default_factory=dict)
    error: bool = False
    contains: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    after: dict[str, bytes | None] = field(default_factory=dict)
    """File contents after the calls; ``None``: the file must not exist."""
    tool_type: str = NEW


def _v(path: str, **extra: Any) -> dict[str, Any]:
    return {"command": "view", "path": path, **extra}


def _r(path: str, old: str, new: str) -> dict[str, Any]:
    return {"command": "str_replace", "path": path, "old_str": old, "new_str": new}


def _i(path: str, line: int, text: str, key: str = "insert_text") -> dict[str, Any]:
    return {"command": "insert", "path": path, "insert_line": line, key: text}


F = "{ws}/f.txt"

CASES: list[Case] = [
    # -- view --------------------------------------------------------------------
    Case(
        "view-numbers-lines-like-cat-n",
        [_v(F)],
        files={"f.txt": b"alpha\n\tbeta\ngamma\n"},
        contains=[
            f"Here's the result of running `cat -n` on {F}:\n"
            "     1\talpha\n     2\t\tbeta\n     3\tgamma\n"
        ],
    ),
    Case(
        "view-range-first-line",
        [_v(F, view_range=[1, 1])],
        files={"f.txt": TEN},
        contains=["     1\tline 1\n"],
        absent=["line 2"],
    ),
    Case(
        "view-range-last-line",
        [_v(F, view_range=[10, 10])],
        files={"f.txt": TEN},
        contains=["    10\tline 10\n"],
        absent=["line 9\n"],
    ),
    Case(
        "view-range-to-the-end",
        [_v(F, view_range=[8, -1])],
        files={"f.txt": TEN},
        contains=["     8\tline 8\n     9\tline 9\n    10\tline 10\n"],
        absent=["line 7"],
    ),
    Case(
        "view-range-start-below-one",
        [_v(F, view_range=[0, 3])],
        files={"f.txt": TEN},
        error=True,
        contains=["Its first element `0` should be within the range of lines of the file: [1, 10]"],
    ),
    Case(
        "view-range-start-past-the-end",
        [_v(F, view_range=[11, -1])],
        files={"f.txt": TEN},
        error=True,
        contains=["Its first element `11` should be within the range of lines of the file"],
    ),
    Case(
        "view-range-end-past-the-end",
        [_v(F, view_range=[2, 12])],
        files={"f.txt": TEN},
        error=True,
        contains=["should be smaller than the number of lines in the file: `10`", "-1"],
    ),
    Case(
        "view-range-end-before-start",
        [_v(F, view_range=[5, 3])],
        files={"f.txt": TEN},
        error=True,
        contains=["Its second element `3` should be larger or equal than its first `5`"],
    ),
    Case(
        "view-range-not-two-integers",
        [_v(F, view_range=[1])],
        files={"f.txt": TEN},
        error=True,
        contains=["Invalid `view_range`. It should be a list of two integers."],
    ),
    Case(
        "view-empty-file",
        [_v(F)],
        files={"f.txt": b""},
        contains=["(the file is empty)"],
    ),
    Case(
        "view-file-without-final-newline",
        [_v(F)],
        files={"f.txt": b"a\nb"},
        contains=["     1\ta\n     2\tb\n"],
        absent=["     3"],
    ),
    Case(
        "view-crlf-file-shows-no-carriage-returns",
        [_v(F)],
        files={"f.txt": b"one\r\ntwo\r\n"},
        contains=["     1\tone\n     2\ttwo\n"],
        absent=["\r"],
    ),
    Case(
        "view-unicode",
        [_v(F)],
        files={"f.txt": "naïve café — 日本語 🎉\n".encode()},
        contains=["     1\tnaïve café — 日本語 🎉\n"],
    ),
    Case(
        "view-directory-two-levels-without-hidden",
        [_v("{ws}/d")],
        files={
            "d/a.txt": b"",
            "d/sub/b.txt": b"",
            "d/sub/deeper/c.txt": b"",
            "d/.hidden/x.txt": b"",
            "d/.dotfile": b"",
        },
        contains=[
            "Here's the files and directories up to 2 levels deep in {ws}/d, excluding hidden "
            "items:\n{ws}/d\n{ws}/d/a.txt\n{ws}/d/sub\n{ws}/d/sub/b.txt\n{ws}/d/sub/deeper\n"
        ],
        absent=["c.txt", ".hidden", ".dotfile"],
    ),
    Case(
        "view-directory-with-range-is-refused",
        [_v("{ws}/d", view_range=[1, 2])],
        files={"d/a.txt": b""},
        error=True,
        contains=["The `view_range` parameter is not allowed when `path` points to a directory."],
    ),
    Case(
        "view-missing-path",
        [_v("{ws}/nope.txt")],
        error=True,
        contains=["The path {ws}/nope.txt does not exist. Please provide a valid path."],
    ),
    Case(
        "view-relative-path",
        [_v("f.txt")],
        error=True,
        contains=["The path f.txt is not an absolute path, it should start with `/`."],
    ),
    Case(
        "view-binary-file",
        [_v("{ws}/b.bin")],
        files={"b.bin": b"\x00\x01\x02ELF\x00"},
        error=True,
        contains=["is not a text file (it contains NUL bytes)", "xxd"],
    ),
    Case(
        "view-outside-the-allowed-roots",
        [_v("/etc/hostname")],
        error=True,
        contains=["/etc/hostname is outside the allowed directories"],
    ),
    # -- create ------------------------------------------------------------------
    Case(
        "create-makes-parents",
        [{"command": "create", "path": "{ws}/new/deep/g.py", "file_text": "print(1)\n"}],
        contains=["File created successfully at: {ws}/new/deep/g.py"],
        after={"new/deep/g.py": b"print(1)\n"},
    ),
    Case(
        "create-refuses-to-overwrite",
        [{"command": "create", "path": F, "file_text": "other"}],
        files={"f.txt": b"keep\n"},
        error=True,
        contains=[f"File already exists at: {F}. Cannot overwrite files using command `create`."],
        after={"f.txt": b"keep\n"},
    ),
    Case(
        "create-on-a-directory",
        [{"command": "create", "path": "{ws}/d", "file_text": "x"}],
        files={"d/a.txt": b""},
        error=True,
        contains=["{ws}/d is a directory"],
    ),
    Case(
        "create-without-file-text",
        [{"command": "create", "path": "{ws}/g.txt"}],
        error=True,
        contains=["Parameter `file_text` is required for command: create"],
        after={"g.txt": None},
    ),
    # -- str_replace ---------------------------------------------------------------
    Case(
        "replace-shows-a-snippet-around-the-edit",
        [_r(F, "line 5\n", "LINE FIVE\nand more\n")],
        files={"f.txt": TEN},
        contains=[
            f"The file {F} has been edited. Here's the result of running `cat -n` on a snippet "
            f"of {F}:\n     1\tline 1\n",
            "     5\tLINE FIVE\n     6\tand more\n     7\tline 6\n",
            "    11\tline 10\nReview the changes",
        ],
        after={"f.txt": TEN.replace(b"line 5\n", b"LINE FIVE\nand more\n")},
    ),
    Case(
        "replace-first-line",
        [_r(F, "line 1\n", "first\n")],
        files={"f.txt": TEN},
        contains=["     1\tfirst\n"],
        after={"f.txt": TEN.replace(b"line 1\n", b"first\n", 1)},
    ),
    Case(
        "replace-last-line-keeps-the-missing-newline",
        [_r(F, "c", "C")],
        files={"f.txt": b"a\nb\nc"},
        after={"f.txt": b"a\nb\nC"},
    ),
    Case(
        "replace-with-nothing-deletes",
        [_r(F, "line 3\n", "")],
        files={"f.txt": TEN},
        after={"f.txt": TEN.replace(b"line 3\n", b"")},
    ),
    Case(
        "replace-without-new-str-deletes",
        [{"command": "str_replace", "path": F, "old_str": "line 4\n"}],
        files={"f.txt": TEN},
        after={"f.txt": TEN.replace(b"line 4\n", b"")},
    ),
    Case(
        "replace-no-match",
        [_r(F, "line 11", "x")],
        files={"f.txt": TEN},
        error=True,
        contains=[
            f"No replacement was performed, old_str `line 11` did not appear verbatim in {F}."
        ],
        after={"f.txt": TEN},
    ),
    Case(
        "replace-no-match-points-at-similar-lines",
        [_r(F, "def  f(x):\n    return x", "y")],
        files={"f.txt": b"# head\n\tdef f(x):\n\t\treturn x\n"},
        error=True,
        contains=["Line 2 holds similar text that differs in whitespace"],
    ),
    Case(
        "replace-several-matches-lists-their-lines",
        [_r(F, "x = 1", "x = 2")],
        files={"f.txt": b"a\nx = 1\nb\nx = 1\nc\n"},
        error=True,
        contains=[
            "Multiple occurrences of old_str `x = 1` in lines [2, 4]. Please ensure it is unique"
        ],
        after={"f.txt": b"a\nx = 1\nb\nx = 1\nc\n"},
    ),
    Case(
        "replace-multiline-matches-listed-by-first-line",
        [_r(F, "if x:\n    y()", "z()")],
        files={"f.txt": b"if x:\n    y()\nif x:\n    y()\n"},
        error=True,
        contains=["in lines [1, 3]"],
    ),
    Case(
        "replace-empty-old-str",
        [_r(F, "", "x")],
        files={"f.txt": TEN},
        error=True,
        contains=["Parameter `old_str` must not be empty"],
        after={"f.txt": TEN},
    ),
    Case(
        "replace-identical-strings-is-a-no-op-edit",
        [_r(F, "line 2", "line 2")],
        files={"f.txt": TEN},
        contains=["has been edited", "line 2"],
        after={"f.txt": TEN},
    ),
    Case(
        "replace-in-crlf-file-keeps-crlf",
        [_r(F, "two\nthree", "2\n3\nthree-and-a-half")],
        files={"f.txt": b"one\r\ntwo\r\nthree\r\nfour\r\n"},
        after={"f.txt": b"one\r\n2\r\n3\r\nthree-and-a-half\r\nfour\r\n"},
    ),
    Case(
        "replace-unicode",
        [_r(F, "café", "caffè ☕")],
        files={"f.txt": "un café — 日本語\n".encode()},
        contains=["     1\tun caffè ☕ — 日本語\n"],
        after={"f.txt": "un caffè ☕ — 日本語\n".encode()},
    ),
    Case(
        "replace-keeps-bytes-that-are-not-utf8",
        [_r(F, "name", "NAME")],
        files={"f.txt": b"name = 'Jos\xe9'\nmore text here to keep it mostly ascii\n"},
        after={"f.txt": b"NAME = 'Jos\xe9'\nmore text here to keep it mostly ascii\n"},
    ),
    Case(
        "replace-keeps-tabs",
        [_r(F, "\tb = 1", "\tb = 2")],
        files={"f.txt": b"def f():\n\tb = 1\n"},
        after={"f.txt": b"def f():\n\tb = 2\n"},
    ),
    Case(
        "replace-on-a-directory",
        [_r("{ws}/d", "a", "b")],
        files={"d/a.txt": b""},
        error=True,
        contains=["The path {ws}/d is a directory and only the `view` command can be used"],
    ),
    Case(
        "replace-missing-file",
        [_r("{ws}/nope.txt", "a", "b")],
        error=True,
        contains=["The path {ws}/nope.txt does not exist. Please provide a valid path."],
    ),
    # -- insert ------------------------------------------------------------------
    Case(
        "insert-at-the-top",
        [_i(F, 0, "zero")],
        files={"f.txt": b"a\nb\n"},
        contains=["     1\tzero\n     2\ta\n"],
        after={"f.txt": b"zero\na\nb\n"},
    ),
    Case(
        "insert-in-the-middle-several-lines",
        [_i(F, 1, "x\ny\n")],
        files={"f.txt": b"a\nb\n"},
        after={"f.txt": b"a\nx\ny\nb\n"},
    ),
    Case(
        "insert-at-the-end",
        [_i(F, 2, "c")],
        files={"f.txt": b"a\nb\n"},
        after={"f.txt": b"a\nb\nc\n"},
    ),
    Case(
        "insert-at-the-end-keeps-the-missing-newline",
        [_i(F, 2, "c")],
        files={"f.txt": b"a\nb"},
        after={"f.txt": b"a\nb\nc"},
    ),
    Case(
        "insert-into-crlf-file",
        [_i(F, 1, "mid")],
        files={"f.txt": b"a\r\nb\r\n"},
        after={"f.txt": b"a\r\nmid\r\nb\r\n"},
    ),
    Case(
        "insert-into-empty-file",
        [_i(F, 0, "only")],
        files={"f.txt": b""},
        after={"f.txt": b"only\n"},
    ),
    Case(
        "insert-line-out-of-range",
        [_i(F, 3, "x")],
        files={"f.txt": b"a\nb\n"},
        error=True,
        contains=[
            "Invalid `insert_line` parameter: 3. It should be within the range of lines of the "
            "file: [0, 2]"
        ],
        after={"f.txt": b"a\nb\n"},
    ),
    Case(
        "insert-negative-line",
        [_i(F, -1, "x")],
        files={"f.txt": b"a\n"},
        error=True,
        contains=["Invalid `insert_line` parameter: -1"],
    ),
    Case(
        "insert-takes-new-str-in-the-older-versions",
        [_i(F, 1, "legacy", key="new_str")],
        files={"f.txt": b"a\nb\n"},
        after={"f.txt": b"a\nlegacy\nb\n"},
        tool_type=LEGACY,
    ),
    Case(
        "insert-without-text",
        [{"command": "insert", "path": F, "insert_line": 0}],
        files={"f.txt": b"a\n"},
        error=True,
        contains=["Parameter `insert_text` is required for command: insert"],
    ),
    # -- undo_edit -----------------------------------------------------------------
    Case(
        "undo-steps-back-through-several-edits",
        [
            {"command": "create", "path": "{ws}/u.txt", "file_text": "one\ntwo\n"},
            _r("{ws}/u.txt", "two", "TWO"),
            _i("{ws}/u.txt", 2, "three", key="new_str"),
            {"command": "undo_edit", "path": "{ws}/u.txt"},
            {"command": "undo_edit", "path": "{ws}/u.txt"},
        ],
        contains=[
            "Last edit to {ws}/u.txt undone successfully. Here's the result of running `cat -n` "
            "on {ws}/u.txt:\n     1\tone\n     2\ttwo\n"
        ],
        after={"u.txt": b"one\ntwo\n"},
        tool_type=LEGACY,
    ),
    Case(
        "undo-of-a-create-removes-the-file",
        [
            {"command": "create", "path": "{ws}/u.txt", "file_text": "x\n"},
            {"command": "undo_edit", "path": "{ws}/u.txt"},
        ],
        contains=["it has been removed"],
        after={"u.txt": None},
        tool_type=LEGACY,
    ),
    Case(
        "undo-without-history",
        [{"command": "undo_edit", "path": F}],
        files={"f.txt": b"a\n"},
        error=True,
        contains=[f"No edit history found for {F}."],
        tool_type=LEGACY,
    ),
    Case(
        "undo-restores-crlf-bytes",
        [_r(F, "b", "B"), {"command": "undo_edit", "path": F}],
        files={"f.txt": b"a\r\nb\r\n"},
        after={"f.txt": b"a\r\nb\r\n"},
        tool_type=LEGACY,
    ),
    Case(
        "undo-is-not-in-the-newer-versions",
        [{"command": "undo_edit", "path": F}],
        files={"f.txt": b"a\n"},
        error=True,
        contains=[
            "Unrecognized command undo_edit. The allowed commands for the "
            "str_replace_based_edit_tool tool are: view, create, str_replace, insert"
        ],
    ),
]


def tool_name(tool_type: str) -> str:
    return "str_replace_editor" if tool_type == LEGACY else "str_replace_based_edit_tool"


def fill(value: Any, ws: str) -> Any:
    if isinstance(value, str):
        return value.replace("{ws}", ws)
    if isinstance(value, dict):
        return {k: fill(v, ws) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ws) for v in value]
    return value


async def run_case(session: Any, ws: str, case: Case) -> None:
    """Run ``case`` in ``session`` under directory ``ws``; assert its expectations."""
    from orchestrator.errors import GuestFileNotFound

    for name, data in case.files.items():
        await session.write_file(f"{ws}/{name}", data)
    name = tool_name(case.tool_type)
    block: dict[str, Any] = {}
    for call in case.calls:
        [block] = await session.run_tools(
            [use(name, fill(call, ws))], tool_types={name: case.tool_type}
        )
    text = result_text(block)
    assert bool(block.get("is_error")) == case.error, text
    for expected in case.contains:
        assert fill(expected, ws) in text, text
    for unexpected in case.absent:
        assert fill(unexpected, ws) not in text, text
    for rel, data in case.after.items():
        if data is None:
            try:
                await session.read_file(f"{ws}/{rel}")
            except GuestFileNotFound:
                continue
            raise AssertionError(f"{rel} should not exist")
        assert await session.read_file(f"{ws}/{rel}") == data
