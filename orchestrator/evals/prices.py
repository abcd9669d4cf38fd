"""What an agent solver's tokens cost: US dollars per million tokens, by model id prefix.

The built-in table holds list prices of the models ``orchestrator.tools.versions``
knows; a suite's ``prices:`` adds to it or overrides it.  A model in neither
has no cost (``None``), never a guessed one.

Must not: call anything, or guess a price.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PRICES", "cost_usd"]

PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
}
"""(input, output) per million tokens; the longest matching prefix wins."""


def cost_usd(
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    extra: Mapping[str, tuple[float, float]] | None = None,
) -> float | None:
    """The cost of a run's tokens, or ``None`` for a model without a known price."""
    if model is None:
        return None
    table = {**PRICES, **(extra or {})}
    matches = [prefix for prefix in table if model.startswith(prefix)]
    if not matches:
        return None
    price_in, price_out = table[max(matches, key=len)]
    return round((input_tokens * price_in + output_tokens * price_out) / 1_000_000, 6)
