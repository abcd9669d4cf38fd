"""Where a request's ``cache_control`` breakpoints go: four, the API's limit.

The prompt is read as tools, then system prompt, then messages; a breakpoint
caches everything up to it, and a later request reads that entry when its own
prefix is identical up to one of its breakpoints or up to 20 blocks before
one.  The four breakpoints:

1. the last tool definition -- the tools, which never change in a run;
2. the system prompt -- tools and system together;
3. the end of the stable part of the conversation: the message before the
   oldest one that still carries an image, since that image is the first
   thing the next trimming step replaces (with no images, the previous
   turn's last message, where the previous request's last breakpoint was);
   a trimming step then re-reads everything up to here and writes only the
   few turns after it;
4. the last message -- the whole request, which the next turn extends.

Must not: change the messages given (marked blocks are copies), or place a
breakpoint on a thinking block (the API refuses that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["EPHEMERAL", "mark_messages", "mark_system", "mark_tools", "stable_end"]

EPHEMERAL = {"type": "ephemeral"}
_UNMARKABLE = ("thinking", "redacted_thinking")


def mark_tools(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools with a breakpoint on the last one."""
    marked = list(tools)
    if marked:
        marked[-1] = {**marked[-1], "cache_control": EPHEMERAL}
    return marked


def mark_system(system: str) -> list[dict[str, Any]]:
    """The system prompt as one text block with a breakpoint."""
    return [{"type": "text", "text": system, "cache_control": EPHEMERAL}]


def _mark(message: dict[str, Any]) -> dict[str, Any] | None:
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = list(content or [])
    for index in range(len(blocks) - 1, -1, -1):
        if blocks[index].get("type") not in _UNMARKABLE:
            blocks[index] = {**blocks[index], "cache_control": EPHEMERAL}
            return {**message, "content": blocks}
    return None


def stable_end(messages: Sequence[dict[str, Any]], first_carried: int | None) -> int | None:
    """The index of breakpoint 3: before the first message carrying an image, else the
    previous turn's last message (the user message before the last assistant message)."""
    if first_carried is not None:
        return first_carried - 1 if first_carried >= 1 else None
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None
    )
    return last_assistant - 1 if last_assistant is not None and last_assistant >= 1 else None


def mark_messages(
    messages: Sequence[dict[str, Any]], first_carried: int | None, *, mark_last: bool = True
) -> list[dict[str, Any]]:
    """``messages`` with breakpoints 3 and 4 (see the module docstring)."""
    marked = list(messages)
    targets = {stable_end(messages, first_carried)}
    if mark_last and marked:
        targets.add(len(marked) - 1)
    for index in sorted(t for t in targets if t is not None and 0 <= t < len(marked)):
        replacement = _mark(marked[index])
        if replacement is not None:
            marked[index] = replacement
    return marked
