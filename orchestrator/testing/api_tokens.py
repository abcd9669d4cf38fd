"""What the Messages API stand-in counts: tokens, the prompt cache, and context editing.

Token counts are estimates of the stand-in's own, independent of the client's:
four characters of text a token, an image ``width * height / 750`` tokens (at
most 1600, as the API's resizing caps it), a fixed few hundred for each
Anthropic-defined tool.  A request is read as the API reads it for caching:
one sequence of blocks, tools first, then the system prompt, then every
message's content blocks.

The cache follows the published rules: a ``cache_control`` breakpoint writes
the prefix up to and including its block; a later request reads a prefix only
if it is identical (``cache_control`` markers aside) to one written before,
found at one of its own breakpoints or up to 20 blocks before one; prefixes
shorter than the model's minimum are not cached; entries live five minutes
from their last use.

Must not: speak HTTP or refuse requests (``api_rules`` does).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CacheUsage",
    "PromptCache",
    "apply_context_edits",
    "block_tokens",
    "count_request",
    "flatten",
    "image_size",
]

LOOKBACK_BLOCKS = 20
CACHE_TTL = 300.0
_TOOL_OVERHEAD = {"computer": 735, "bash": 245, "text_editor": 700}
_TOOL_USE_PROMPT = 346
_CLEARED = "[tool result cleared by context management]"


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def image_size(data: str) -> tuple[int, int] | None:
    """Width and height of a base64 PNG (from its header), or ``None``."""
    try:
        head = base64.b64decode(data[:44], validate=False)
    except (binascii.Error, ValueError):
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 24:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _image_tokens(block: dict[str, Any]) -> int:
    source = block.get("source") or {}
    size = image_size(source.get("data", "")) if source.get("type") == "base64" else None
    if size is None:
        return 1600
    width, height = size
    return max(1, min(1600, math.ceil(width * height / 750)))


def block_tokens(block: Any) -> int:
    """The stand-in's count of one content block (or a string of text)."""
    if isinstance(block, str):
        return _text_tokens(block)
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return _text_tokens(block.get("text", "")) + 2
    if kind == "image":
        return _image_tokens(block)
    if kind == "tool_use":
        return _text_tokens(block.get("name", "") + json.dumps(block.get("input", {}))) + 8
    if kind == "tool_result":
        inner = block.get("content", "")
        parts = inner if isinstance(inner, list) else [inner]
        return sum(block_tokens(part) for part in parts) + 8
    if kind == "thinking":
        return _text_tokens(block.get("thinking", ""))
    stripped = {k: v for k, v in block.items() if k != "cache_control"}
    return _text_tokens(json.dumps(stripped))


def _tool_tokens(tool: dict[str, Any]) -> int:
    kind = str(tool.get("type", "custom"))
    family = kind.rsplit("_", 1)[0] if kind != "custom" else ""
    family = "text_editor" if family.startswith("text_editor") else family
    stripped = {k: v for k, v in tool.items() if k != "cache_control"}
    return _TOOL_OVERHEAD.get(family, 300 if family else 0) + _text_tokens(json.dumps(stripped))


def _canonical(value: Any) -> Any:
    """``value`` without ``cache_control`` anywhere: markers do not change what is cached."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


@dataclass(frozen=True)
class FlatBlock:
    where: str
    """``tools.N``, ``system.N`` or ``messages.I.content.J``."""
    key: bytes
    tokens: int
    breakpoints: int
    """``cache_control`` markers on this block and inside it."""


def _markers(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if value.get("cache_control") else 0
        return own + sum(_markers(v) for k, v in value.items() if k != "cache_control")
    if isinstance(value, list):
        return sum(_markers(v) for v in value)
    return 0


def flatten(payload: dict[str, Any]) -> list[FlatBlock]:
    """The request as the cache reads it: tools, system, then message blocks, in order."""
    blocks: list[FlatBlock] = []

    def add(where: str, role: str, block: Any, tokens: int) -> None:
        key = json.dumps([role, _canonical(block)], sort_keys=True).encode()
        blocks.append(FlatBlock(where, key, tokens, _markers(block)))

    tools = payload.get("tools") or []
    for i, tool in enumerate(tools):
        add(f"tools.{i}", "tool", tool, _tool_tokens(tool))
    system = payload.get("system")
    system_blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system or []
    for i, block in enumerate(system_blocks):
        add(f"system.{i}", "system", block, block_tokens(block))
    messages = payload.get("messages") or []
    last_assistant = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
        default=-1,
    )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for j, block in enumerate(parts):
            tokens = block_tokens(block)
            if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
                # Thinking of earlier turns is dropped from the context window.
                tokens = tokens if i == last_assistant else 0
            add(f"messages.{i}.content.{j}", str(message.get("role")), block, tokens + 1)
    return blocks


def count_request(payload: dict[str, Any]) -> int:
    """The input tokens of a request, as ``count_tokens`` answers."""
    overhead = _TOOL_USE_PROMPT if payload.get("tools") else 0
    return overhead + sum(block.tokens for block in flatten(payload))


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int


@dataclass
class PromptCache:
    """The prefixes written so far, by hash, with their token counts and expiry."""

    min_tokens: int = 1024
    ttl: float = CACHE_TTL
    entries: dict[str, tuple[int, float]] = field(default_factory=dict)

    def use(self, payload: dict[str, Any], now: float | None = None) -> CacheUsage:
        """Read what this request may read, write what its breakpoints mark; the usage."""
        now = time.monotonic() if now is None else now
        blocks = flatten(payload)
        total = count_request(payload)
        overhead = total - sum(block.tokens for block in blocks)
        running = hashlib.sha256(str(payload.get("model", "")).encode())
        prefixes: list[tuple[str, int]] = []
        tokens = overhead
        for block in blocks:
            running.update(hashlib.sha256(block.key).digest())
            tokens += block.tokens
            prefixes.append((running.hexdigest(), tokens))
        marks = [i for i, block in enumerate(blocks) if block.breakpoints]
        read = 0
        for mark in marks:
            for i in range(mark, max(-1, mark - LOOKBACK_BLOCKS - 1), -1):
                digest, length = prefixes[i]
                entry = self.entries.get(digest)
                if entry is not None and entry[1] > now:
                    self.entries[digest] = (length, now + self.ttl)
                    read = max(read, length)
                    break
        written_to = read
        for mark in marks:
            digest, length = prefixes[mark]
            if length < self.min_tokens:
                continue
            if digest not in self.entries or self.entries[digest][1] <= now:
                self.entries[digest] = (length, now + self.ttl)
            written_to = max(written_to, length)
        return CacheUsage(
            input_tokens=total - written_to,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=written_to - read,
        )


def apply_context_edits(
    payload: dict[str, Any], total: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``payload`` after its ``clear_tool_uses_20250919`` edit (if triggered), and the edits
    applied, as the API's ``context_management.applied_edits`` lists them."""
    edits = (payload.get("context_management") or {}).get("edits") or []
    applied: list[dict[str, Any]] = []
    for edit in edits:
        if edit.get("type") != "clear_tool_uses_20250919":
            continue
        trigger = (edit.get("trigger") or {}).get("value", 100_000)
        if total <= trigger:
            continue
        keep = (edit.get("keep") or {}).get("value", 3)
        at_least = (edit.get("clear_at_least") or {}).get("value", 0)
        excluded = set(edit.get("exclude_tools") or ())
        edited = copy.deepcopy(payload)
        names: dict[str, str] = {}
        results: list[dict[str, Any]] = []
        for message in edited.get("messages") or []:
            content = message.get("content")
            for block in content if isinstance(content, list) else []:
                if block.get("type") == "tool_use":
                    names[block.get("id", "")] = block.get("name", "")
                elif block.get("type") == "tool_result":
                    results.append(block)
        candidates = [r for r in results if names.get(r.get("tool_use_id", "")) not in excluded]
        cleared = cleared_tokens = 0
        for block in candidates[: max(0, len(candidates) - keep)]:
            before = block_tokens(block)
            block["content"] = [{"type": "text", "text": _CLEARED}]
            block.pop("is_error", None)
            cleared += 1
            cleared_tokens += before - block_tokens(block)
        if cleared and cleared_tokens >= at_least:
            payload = edited
            applied.append(
                {
                    "type": "clear_tool_uses_20250919",
                    "cleared_tool_uses": cleared,
                    "cleared_input_tokens": cleared_tokens,
                }
            )
    return payload, applied
