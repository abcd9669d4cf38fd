"""Text helpers shared by tools: clipping long output for a model's context."""

from __future__ import annotations

__all__ = ["clip"]


def clip(text: str, limit: int, *, hint: str) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail and a note.

    Both ends matter: a build log's errors are usually at the end, a listing's
    shape at the start.
    """
    if len(text) <= limit:
        return text
    note = (
        f"\n\n[... {len(text) - limit:,} of {len(text):,} characters clipped here; {hint} ...]\n\n"
    )
    keep = max(0, limit - len(note))
    head = keep * 2 // 3
    tail = keep - head
    return text[:head] + note + (text[-tail:] if tail else "")
