"""What the Messages API refuses, as the stand-in checks it before answering.

Only rules a client of the API can break are checked, each with the message
the API gives: empty text blocks; more than four ``cache_control``
breakpoints; a ``tool_use`` without its ``tool_result`` in the next message,
or a ``tool_result`` without its ``tool_use`` in the previous one; tool blocks
without tools; the thinking budget out of bounds; a thinking block altered
(its signature no longer matches), or missing where thinking is on and the
last assistant turn called tools; context editing without its beta flag.

Must not: count tokens or answer requests (``api_tokens`` and ``messages_api`` do).
"""

from __future__ import annotations

from typing import Any

from orchestrator.testing.api_script import sign_thinking
from orchestrator.testing.api_tokens import flatten

__all__ = ["MAX_BREAKPOINTS", "refusal"]

MAX_BREAKPOINTS = 4
CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"


def _blocks(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def _empty_text(messages: list[Any]) -> str | None:
    for i, message in enumerate(messages):
        for j, block in enumerate(_blocks(message)):
            if not isinstance(block, dict):
                continue
            inner = block.get("content") if block.get("type") == "tool_result" else None
            for part in [block, *(inner if isinstance(inner, list) else [])]:
                if isinstance(part, dict) and part.get("type") == "text" and not part.get("text"):
                    return f"messages.{i}.content.{j}: text content blocks must be non-empty"
    return None


def _tool_pairs(messages: list[Any], has_tools: bool) -> str | None:
    seen: set[str] = set()
    previous_uses: list[str] = []
    for i, message in enumerate(messages):
        blocks = [b for b in _blocks(message) if isinstance(b, dict)]
        role = message.get("role") if isinstance(message, dict) else None
        kinds = {b.get("type") for b in blocks}
        if kinds & {"tool_use", "tool_result"} and not has_tools:
            return "Requests which include `tool_use` or `tool_result` blocks must define tools."
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if role == "user":
            answered = {b.get("tool_use_id") for b in results}
            missing = [use for use in previous_uses if use not in answered]
            if missing:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
            for j, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in set(
                    previous_uses
                ):
                    return (
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous message."
                    )
            previous_uses = []
        elif role == "assistant":
            if previous_uses:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(previous_uses)}. Each `tool_use` block must "
                    "have a corresponding `tool_result` block in the next message."
                )
            if results:
                return f"messages.{i}: `tool_result` blocks can only be in `user` messages"
            previous_uses = [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"]
            for use in previous_uses:
                if use in seen:
                    return f"messages.{i}: `tool_use` ids must be unique; {use} is repeated"
                seen.add(use)
    if previous_uses:
        return (
            f"messages.{len(messages) - 1}: the final `assistant` message calls tools "
            f"({', '.join(previous_uses)}) whose `tool_result` blocks never follow"
        )
    return None


def _thinking(payload: dict[str, Any], messages: list[Any]) -> str | None:
    for i, message in enumerate(messages):
        for j, block in enumerate(_blocks(message)):
            if (
                isinstance(block, dict)
                and block.get("type") == "thinking"
                and block.get("signature") != sign_thinking(str(block.get("thinking", "")))
            ):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    thinking = payload.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if "max_tokens" in payload and budget >= int(payload["max_tokens"] or 0):
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    if not any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in _blocks(messages[-1])
    ):
        return None
    index = len(messages) - 2
    assistant = _blocks(messages[index]) if index >= 0 else []
    first = assistant[0].get("type") if assistant and isinstance(assistant[0], dict) else None
    if first not in ("thinking", "redacted_thinking"):
        return (
            f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{first}`. When `thinking` is enabled, a final `assistant` message must start "
            "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` "
            "blocks). We recommend you include thinking blocks from previous turns. To avoid "
            "this requirement, disable `thinking`."
        )
    return None


def refusal(payload: dict[str, Any], betas: list[str]) -> str | None:
    """Why the API would answer this request 400 (``invalid_request_error``); else ``None``."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return "messages: Field required"
    problem = _empty_text(messages)
    if problem is not None:
        return problem
    marks = sum(block.breakpoints for block in flatten(payload))
    if marks > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {marks}."
        )
    problem = _tool_pairs(messages, bool(payload.get("tools")))
    if problem is not None:
        return problem
    problem = _thinking(payload, messages)
    if problem is not None:
        return problem
    if payload.get("context_management") and CONTEXT_MANAGEMENT_BETA not in betas:
        return (
            "context_management: Extra inputs are not permitted (send the beta flag "
            f"{CONTEXT_MANAGEMENT_BETA})"
        )
    return None
