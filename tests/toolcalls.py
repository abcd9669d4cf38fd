"""Helpers for tests that make Claude tool calls through a session's router."""

from __future__ import annotations

import secrets
from typing import Any


def use(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    """One ``tool_use`` block."""
    return {
        "type": "tool_use",
        "id": f"toolu_{secrets.token_hex(6)}",
        "name": name,
        "input": tool_input,
    }


def result_text(block: dict[str, Any]) -> str:
    """The text of a ``tool_result`` block (a string when it is an error)."""
    content = block["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")


async def call(
    session: Any, name: str, tool_input: dict[str, Any], tool_types: dict[str, str] | None = None
) -> tuple[bool, str, dict[str, Any]]:
    """Make one call; ``(is_error, text, block)``."""
    [block] = await session.run_tools([use(name, tool_input)], tool_types=tool_types)
    return bool(block.get("is_error")), result_text(block), block
