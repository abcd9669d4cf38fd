"""Timing helpers every benchmark shares: sequential samples and their percentiles.

Must not: judge figures (each benchmark compares against its own baseline,
measured in the same run).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["measure", "percentile"]


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` (0..1) of the sorted samples, nearest rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def measure(
    fn: Callable[[], Awaitable[Any]], iterations: int, warmup: int = 5
) -> list[float]:
    """Wall-clock milliseconds of ``iterations`` sequential calls, after a warm-up."""
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples
