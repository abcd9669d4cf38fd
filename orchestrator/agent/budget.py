"""Whether the next request may cross the context budget, without asking the API each turn.

The API tells the size of every prompt it answered (input plus cache reads
and writes).  The next request is that prompt plus what was added since (the
answer and the tool results), estimated here on the generous side: text at
three characters a token, an image by its area (``width * height / 750``, at
most 1600).  Only when that estimate reaches nine tenths of the budget does
the loop ask ``count_tokens`` for the exact figure -- so a run far from its
budget never pays for a count, and a run near it never guesses.

Must not: call the API (the loop does, when ``needs_count`` says so).
"""

from __future__ import annotations

import json
import math
from typing import Any

from orchestrator.agent.images import png_size

__all__ = ["COUNT_FROM", "ContextBudget", "estimate_tokens"]

COUNT_FROM = 0.9
"""Share of the budget from which an estimate is checked with ``count_tokens``."""


def estimate_tokens(value: Any) -> int:
    """A generous estimate of the tokens of a request part (blocks, messages, params)."""
    if isinstance(value, str):
        return math.ceil(len(value) / 3)
    if isinstance(value, list):
        return sum(estimate_tokens(item) for item in value)
    if not isinstance(value, dict):
        return math.ceil(len(json.dumps(value, default=str)) / 3)
    if value.get("type") == "image":
        source = value.get("source") or {}
        size = png_size(source.get("data", "")) if source.get("type") == "base64" else None
        return 1600 if size is None else min(1600, math.ceil(size[0] * size[1] / 750) + 1)
    return 4 + sum(
        estimate_tokens(item) if isinstance(item, dict | list) else estimate_tokens(str(item))
        for key, item in value.items()
        if key not in ("cache_control", "signature", "type")
    )


class ContextBudget:
    """The budget of one run: the last prompt's known size, and what was added since."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.known: int | None = None
        self.added = 0

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def observed(self, prompt_tokens: int) -> None:
        """The size of the prompt just sent, as the API counted it."""
        self.known = prompt_tokens
        self.added = 0

    def add(self, content: Any) -> None:
        """Content appended to the conversation since."""
        self.added += estimate_tokens(content)

    def forget(self) -> None:
        """The conversation changed other than by growing (compaction): estimate afresh."""
        self.known = None
        self.added = 0

    def estimate(self, request: dict[str, Any]) -> int:
        """The next request's size: known + added, or a fresh estimate of all of it."""
        if self.known is not None:
            return self.known + self.added
        parts = ("tools", "system", "messages")
        return sum(estimate_tokens(request.get(part) or []) for part in parts)

    def needs_count(self, request: dict[str, Any]) -> bool:
        return self.enabled and self.estimate(request) >= COUNT_FROM * self.budget
