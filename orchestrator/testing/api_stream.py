"""A message as the Messages API streams it: server-sent events, block by block.

``message_start`` (with the input and cache usage), per content block
``content_block_start`` / ``content_block_delta`` (text, thinking and its
signature, tool input as partial JSON) / ``content_block_stop``, then
``message_delta`` (stop reason, usage totals, context management) and
``message_stop`` -- the sequence the ``anthropic`` SDK accumulates.

Must not: decide what the message says (``messages_api`` and the script do).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

__all__ = ["stream_events"]


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _block_events(index: int, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = block["type"]

    def start(content_block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_start", {
            "type": "content_block_start",
            "index": index,
            "content_block": content_block,
        }

    def delta(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": index,
            "delta": payload,
        }

    if kind == "text":
        yield start({"type": "text", "text": ""})
        for piece in _chunks(block["text"], 16):
            yield delta({"type": "text_delta", "text": piece})
    elif kind == "thinking":
        yield start({"type": "thinking", "thinking": "", "signature": ""})
        for piece in _chunks(block["thinking"], 32):
            yield delta({"type": "thinking_delta", "thinking": piece})
        yield delta({"type": "signature_delta", "signature": block["signature"]})
    else:
        yield start({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}})
        raw = json.dumps(block["input"])
        for piece in [raw[i : i + 24] for i in range(0, len(raw), 24)]:
            yield delta({"type": "input_json_delta", "partial_json": piece})
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def stream_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of ``message`` streamed."""
    usage = dict(message["usage"])
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    start.pop("context_management", None)
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        yield from _block_events(index, block)
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": usage,
    }
    if message.get("context_management") is not None:
        delta["context_management"] = message["context_management"]
    yield "message_delta", delta
    yield "message_stop", {"type": "message_stop"}
