"""What an agent solver's tokens cost, in US dollars.

The agent run prices its own usage (``agent.prices``, cache reads and writes
at their own rates) and its step reports ``cost_usd``; a trial's cost is the
sum over its agent steps.  A suite's ``prices:`` (model id prefix to input
and output price per million tokens) overrides that for the models it
names, applied to every prompt token, cached or not.  A model priced
nowhere has no cost (``None``), never a guessed one.

Must not: call anything, or guess a price.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["trial_cost"]


def trial_cost(
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    step_costs: Sequence[float | None],
    suite_prices: Mapping[str, tuple[float, float]],
) -> float | None:
    """The trial's cost: by the suite's price for ``model`` where it names one, else the
    sum of what its agent steps reported (``None`` if any step had no price)."""
    if model is not None:
        matches = [prefix for prefix in suite_prices if model.startswith(prefix)]
        if matches:
            price_in, price_out = suite_prices[max(matches, key=len)]
            return round((input_tokens * price_in + output_tokens * price_out) / 1_000_000, 6)
    if not step_costs or any(cost is None for cost in step_costs):
        return None
    return round(sum(cost for cost in step_costs if cost is not None), 6)
