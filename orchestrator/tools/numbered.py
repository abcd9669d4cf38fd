"""File views for Claude's editor and memory tools: lines numbered like ``cat -n``, within a cap.

Only text: the guest sends the lines, these helpers number them and cut the
view at a line boundary when it would pass the character cap, with a note
saying which lines were shown and how to see the rest.
"""

from __future__ import annotations

__all__ = ["CLIPPED", "human_size", "number_lines", "quote"]

CLIPPED = "<response clipped>"
"""The marker the published editor description promises for clipped output."""

LINE_NUMBER_WIDTH = 6


def number_lines(text: str, first: int, limit: int) -> tuple[str, int]:
    """``text``'s lines numbered from ``first``, cut before ``limit`` characters.

    Returns the numbered text and the number of the last line shown whole
    (``first - 1`` when not even the first fits; that line is then cut short).
    """
    if not text and first >= 1:
        return "", first - 1
    out: list[str] = []
    used = 0
    number = first - 1
    for number, line in enumerate(text.split("\n"), first):
        row = f"{number:{LINE_NUMBER_WIDTH}}\t{line}"
        if used + len(row) + 1 > limit:
            if not out:  # one enormous line: show its start rather than nothing
                out.append(row[: max(0, limit - 1)])
            return "\n".join(out), number - 1
        out.append(row)
        used += len(row) + 1
    return "\n".join(out), number


def quote(text: str, limit: int = 2000) -> str:
    """Model-supplied text echoed in a message, shortened if it is long."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit:,} more characters]"


def human_size(size: int) -> str:
    """Sizes as the memory tool's reference implementation prints them: 0B, 512B, 1.5K, 4K."""
    if size <= 0:
        return "0B"
    units = ["B", "K", "M", "G"]
    index = min((size.bit_length() - 1) // 10, len(units) - 1)
    value = size / (1024**index)
    return f"{int(value)}{units[index]}" if value == int(value) else f"{value:.1f}{units[index]}"
