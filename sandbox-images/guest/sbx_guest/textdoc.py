"""Text files as the editor sees them: lossless decoding, lines, snippets, undo history.

A ``Document`` keeps every byte of a file: CRLF line endings, a missing final
newline and bytes that are not UTF-8 (held as surrogate escapes) all survive
a round trip, so an edit changes exactly what it replaces.  Lines are counted
as ``cat -n`` counts them.  Pure functions and data only: no file access here
beyond ``signature``.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import List, Optional, Tuple

from . import protocol
from .errors import CallError

SNIPPET_LINES = 4
"""Lines shown around an edit, as the reference implementation does."""
_SURROGATES = re.compile("[\udc80-\udcff]")


class Document:
    """A text file's bytes, decoded losslessly, in the form edits work on.

    ``work`` is the text with CRLF line breaks turned into LF when the file
    uses CRLF throughout, so the model's ``\\n`` matches; ``encode`` turns
    them back.  A file that mixes both is edited as it is.
    """

    def __init__(self, raw: bytes, shown: str) -> None:
        if b"\0" in raw:
            raise CallError(
                protocol.E_BINARY,
                "%s is a binary file (it contains NUL bytes)" % shown,
                {"path": shown, "reason": "nul"},
            )
        try:
            self.text = raw.decode("utf-8")
            self.invalid = 0
        except UnicodeDecodeError:
            self.text = raw.decode("utf-8", "surrogateescape")
            self.invalid = len(_SURROGATES.findall(self.text))
            if self.invalid > max(8, len(raw) // 20):
                raise CallError(
                    protocol.E_BINARY,
                    "%s is not UTF-8 text (%d bytes do not decode)" % (shown, self.invalid),
                    {"path": shown, "reason": "encoding", "invalid": self.invalid},
                ) from None
        crlf = self.text.count("\r\n")
        lf = self.text.count("\n")
        if not crlf:
            self.style = "lf"
            self.work = self.text
        elif crlf == lf:
            self.style = "crlf"
            self.work = self.text.replace("\r\n", "\n")
        else:
            self.style = "mixed"
            self.work = self.text

    def encode(self, work: str) -> bytes:
        if self.style == "crlf":
            work = work.replace("\n", "\r\n")
        return work.encode("utf-8", "surrogateescape")

    def incoming(self, text: str) -> str:
        """Text from the model in the form of ``work`` (its line breaks as this file's)."""
        if self.style == "crlf":
            return text.replace("\r\n", "\n")
        return text

    @property
    def eol(self) -> str:
        """The break a new line gets: LF in ``work`` except where a mixed file mostly uses CRLF."""
        if self.style == "mixed" and self.text.count("\r\n") * 2 >= self.text.count("\n"):
            return "\r\n"
        return "\n"


def count_lines(work: str) -> int:
    """Lines as ``cat -n`` numbers them: a final newline ends the last line, starts none."""
    if not work:
        return 0
    breaks = work.count("\n")
    return breaks if work.endswith("\n") else breaks + 1


def split_lines(work: str) -> List[str]:
    lines = work.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def display(lines: List[str]) -> bytes:
    """Lines for the model: a mixed file's CR endings are not shown (edits add them back)."""
    return "\n".join(line[:-1] if line.endswith("\r") else line for line in lines).encode(
        "utf-8", "surrogateescape"
    )


def find_all(work: str, needle: str, limit: int) -> List[int]:
    """Start offsets of every occurrence, overlapping ones included, up to ``limit``."""
    found: List[int] = []
    index = work.find(needle)
    while index >= 0 and len(found) < limit:
        found.append(index)
        index = work.find(needle, index + 1)
    return found


def line_of(work: str, offset: int) -> int:
    return work.count("\n", 0, offset) + 1


def snippet(work: str, first: int, last: int) -> Tuple[int, bytes]:
    """Lines ``first-SNIPPET_LINES`` .. ``last+SNIPPET_LINES`` of ``work`` (1-based), clamped."""
    start_line = max(1, first - SNIPPET_LINES)
    end_line = last + SNIPPET_LINES
    # Walk to the start without splitting the whole (possibly large) text.
    offset = 0
    for _ in range(start_line - 1):
        nxt = work.find("\n", offset)
        if nxt < 0:
            break
        offset = nxt + 1
    end = offset
    for _ in range(end_line - start_line + 1):
        nxt = work.find("\n", end)
        if nxt < 0:
            end = len(work)
            break
        end = nxt + 1
    return start_line, display(split_lines(work[offset:end]))


class History:
    """Per-file undo snapshots for one sandbox, bounded in depth and in bytes.

    A snapshot is the file's bytes before an edit (``None``: it did not
    exist) and the signature of what the edit wrote, so an undo can say
    whether the file changed by other means since.  It lives in the guest,
    so it ends with the session and is paid for by the sandbox's memory.
    """

    def __init__(self) -> None:
        self.files: "OrderedDict[str, List[Tuple[Optional[bytes], tuple]]]" = OrderedDict()
        self.bytes = 0
        self.dropped: set = set()

    def push(
        self, real: str, before: Optional[bytes], after: tuple, depth: int, limit: int
    ) -> None:
        if depth <= 0:
            return
        entries = self.files.setdefault(real, [])
        self.files.move_to_end(real)
        entries.append((before, after))
        self.bytes += len(before or b"")
        while len(entries) > depth:
            self._drop(real, 0)
        # Over the byte cap: forget the oldest snapshots of the least recently edited files.
        while self.bytes > limit and self.files:
            oldest = next(iter(self.files))
            if oldest == real and len(self.files[oldest]) <= 1:
                if len(self.files) == 1:
                    self._drop(real, 0)
                    break
                self.files.move_to_end(real)
                continue
            self._drop(oldest, 0)

    def _drop(self, real: str, index: int) -> None:
        entries = self.files.get(real)
        if not entries:
            return
        before, _ = entries.pop(index)
        self.bytes -= len(before or b"")
        self.dropped.add(real)
        if not entries:
            del self.files[real]

    def pop(self, real: str) -> Optional[Tuple[Optional[bytes], tuple]]:
        entries = self.files.get(real)
        if not entries:
            return None
        before, after = entries.pop()
        self.bytes -= len(before or b"")
        if not entries:
            del self.files[real]
        return before, after

    def depth(self, real: str) -> int:
        return len(self.files.get(real) or ())


def signature(real: str) -> tuple:
    try:
        info = os.stat(real)
    except OSError:
        return ()
    return (info.st_ino, info.st_size, info.st_mtime_ns)
