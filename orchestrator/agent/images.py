"""Which images a request carries: the newest few, older ones replaced in steps.

Screenshots are worth less the older they are, and each costs about a
thousand input tokens on every later request.  A request carries at most
``keep`` images; the older ones become a one-line text placeholder that says
what was there (its size, the tool and action that returned it, the turn).
Images are replaced ``step`` at a time: between two replacements every
request repeats the one before it word for word and extends it, so the
prompt cache keeps serving it; each replacement changes the prefix once, at
the oldest image carried.

The placeholders are the same text every time for the same image, so a
replaced image stays replaced in the same words.

Must not: change the conversation's own messages (the view is a copy where
it differs), or touch anything but image blocks.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TrimmedView", "count_images", "png_size", "trim_images"]


@dataclass(frozen=True)
class TrimmedView:
    messages: list[dict[str, Any]]
    carried: int
    """Images the view still carries."""
    replaced: int
    """Images replaced by a placeholder."""
    first_carried: int | None
    """The index of the first message that still carries an image: the messages before it
    stay as they are until the next compaction (the cache's stable prefix)."""


def png_size(data: str) -> tuple[int, int] | None:
    """Width and height of a base64 PNG, read from its header; ``None`` if it is no PNG."""
    try:
        head = base64.b64decode(data[:44])
    except (binascii.Error, ValueError):
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _images(messages: Sequence[dict[str, Any]]) -> list[tuple[int, int, int | None]]:
    """Where every image is: (message, block, inner block of a tool_result or None)."""
    found: list[tuple[int, int, int | None]] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            if block.get("type") == "image":
                found.append((i, j, None))
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                for k, inner in enumerate(block["content"]):
                    if inner.get("type") == "image":
                        found.append((i, j, k))
    return found


def count_images(messages: Sequence[dict[str, Any]]) -> int:
    return len(_images(messages))


def _placeholder(
    image: dict[str, Any], origin: dict[str, Any] | None, turn: int | None
) -> dict[str, Any]:
    source = image.get("source") or {}
    size = png_size(source.get("data", "")) if source.get("type") == "base64" else None
    what = f"a {size[0]}x{size[1]} image" if size else "an image"
    if origin is not None:
        action = (origin.get("input") or {}).get("action")
        what += f" the {origin.get('name')} tool returned" + (f" ({action})" if action else "")
    when = f" in turn {turn}" if turn is not None else ""
    return {
        "type": "text",
        "text": f"[{what}{when}: omitted to save context; newer screenshots follow]",
    }


def trim_images(
    messages: Sequence[dict[str, Any]],
    keep: int,
    step: int,
    turns: Sequence[int] | None = None,
) -> TrimmedView:
    """``messages`` carrying at most ``keep`` images (``keep`` 0: all), the oldest replaced
    in multiples of ``step``; ``turns`` labels each message with its turn."""
    where = _images(messages)
    total = len(where)
    if keep <= 0 or total <= keep:
        first = where[0][0] if where else None
        return TrimmedView(list(messages), total, 0, first)
    replaced = min(total, step * math.ceil((total - keep) / max(1, step)))
    origins: dict[str, dict[str, Any]] = {}
    for message in messages:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_use":
                origins[str(block.get("id"))] = block
    view = list(messages)
    copied: set[int] = set()
    for i, j, k in where[:replaced]:
        if i not in copied:
            view[i] = {**view[i], "content": list(view[i]["content"])}
            copied.add(i)
        content = view[i]["content"]
        turn = turns[i] if turns is not None else None
        if k is None:
            content[j] = _placeholder(content[j], None, turn)
            continue
        result = {**content[j], "content": list(content[j]["content"])}
        origin = origins.get(str(result.get("tool_use_id")))
        result["content"][k] = _placeholder(result["content"][k], origin, turn)
        content[j] = result
    first = where[replaced][0] if replaced < total else None
    return TrimmedView(view, total - replaced, replaced, first)
