"""Token usage of a run -- per response and in total -- and what it costs.

The API reports four figures per response: input tokens not read from or
written to the cache, cache reads, cache writes, and output tokens.  The
prompt a response was given is the first three together.  The cost of a run
is the sum of each figure times its price (``agent.prices``, $ per million
tokens); a model without a price has no cost estimate rather than a wrong one.

Must not: call the API or read the configuration file (prices are handed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.config import ModelPrice

__all__ = ["Ledger", "Usage", "cost_of"]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """The figures of an SDK ``usage`` object (or the dict a transcript holds)."""

        def get(name: str) -> int:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            return int(value or 0)

        return cls(
            input_tokens=get("input_tokens"),
            output_tokens=get("output_tokens"),
            cache_read_tokens=get("cache_read_input_tokens"),
            cache_write_tokens=get("cache_creation_input_tokens"),
        )

    @property
    def prompt_tokens(self) -> int:
        """Every input token of the request, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def record(self) -> dict[str, int]:
        """The figures under the API's names, for the transcript."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
        }


def cost_of(usage: Usage, price: ModelPrice | None) -> float | None:
    """US dollars for ``usage`` at ``price``; ``None`` without a price."""
    if price is None:
        return None
    dollars = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    ) / 1_000_000
    return round(dollars, 6)


class Ledger:
    """The usage of a run so far: every response's, turns and summaries alike."""

    def __init__(self, start: Usage | None = None) -> None:
        self.total = start or Usage()
        self.responses = 0

    def add(self, usage: Usage) -> None:
        self.total = self.total + usage
        self.responses += 1
