"""The script of the Messages API stand-in: scripted replies, loaded from YAML or built in code.

A ``Reply`` is one answer of the scripted Claude: text, tool calls, thinking
(sent only when the request enables it), or an API error.  Usage figures are
worked out from the request unless the script fixes them.  Requests that
forbid tools (``tool_choice: none``, as a compaction's summary request does)
are answered apart from the script, so a script lists only the agent's turns.

Must not: speak HTTP or judge requests (``messages_api`` and ``api_rules`` do).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "APIErrorReply",
    "Reply",
    "ReplySource",
    "ToolUseReply",
    "load_script",
    "sign_thinking",
    "summary_reply",
]


class ToolUseReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class APIErrorReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int = 529
    type: str = "overloaded_error"
    message: str = "Overloaded"
    retry_after_ms: int | None = 10


class Reply(BaseModel):
    """One scripted answer: text and/or tool calls, or an API error."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    tool_uses: list[ToolUseReply] = Field(default_factory=list)
    thinking: str | None = None
    """The thinking block sent first when the request enables thinking (a default if unset)."""
    stop_reason: str | None = None
    error: APIErrorReply | None = None
    input_tokens: int | None = None
    """Fixed uncached input tokens (no cache figures); unset, counted from the request."""
    output_tokens: int | None = None
    """Fixed output tokens; unset, counted from the reply's content."""

    def content(self, *, thinking: bool = False) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if thinking:
            text = self.thinking or "Thinking about the next step."
            blocks.append({"type": "thinking", "thinking": text, "signature": sign_thinking(text)})
        if self.text is not None:
            blocks.append({"type": "text", "text": self.text})
        for tool_use in self.tool_uses:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_use.id or f"toolu_{secrets.token_hex(12)}",
                    "name": tool_use.name,
                    "input": tool_use.input,
                }
            )
        return blocks


ReplySource = Reply | Callable[[dict[str, Any]], Reply]
"""A fixed reply, or a function of the request body (to react to tool results)."""


def sign_thinking(text: str) -> str:
    """The stand-in's signature of a thinking block: any change to the text breaks it."""
    digest = hashlib.sha256(b"sbx-fake-api-thinking\0" + text.encode()).digest()
    return base64.b64encode(digest).decode("ascii")


def summary_reply(payload: dict[str, Any]) -> Reply:
    """The answer to a request that forbids tools: a plain summary of what it was sent.

    It names how many messages it read and quotes the newest assistant text,
    so a test can tell which turns a compaction summarised.
    """
    messages = payload.get("messages") or []
    last_text = ""
    turns = 0
    for message in messages:
        if message.get("role") != "assistant":
            continue
        turns += 1
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
                last_text = block["text"]
    return Reply(
        text=f"Summary of {len(messages)} messages ({turns} assistant turns). "
        f"Latest: {last_text[:300] or '(no text)'}"
    )


def load_script(path: str | Path) -> list[Reply]:
    """A YAML (or JSON) list of replies, e.g. ``- {text: hi, tool_uses: [{name: bash, ...}]}``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: a script is a list of replies")
    return [Reply.model_validate(item) for item in data]
