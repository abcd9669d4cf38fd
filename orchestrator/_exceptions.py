"""Handing exceptions back the way they were raised, through our nurseries.

trio wraps everything that leaves a nursery in an ``ExceptionGroup``.  Where
a nursery is our implementation detail (a session's, the orchestrator's), a
lone exception is unwrapped so callers can ``except ImageNotFound`` instead
of digging through groups; real multi-failure groups pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["leaf_exceptions", "unwrap_single_exception"]


def leaf_exceptions(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += leaf_exceptions(exc)
        else:
            found.append(exc)
    return found


@contextmanager
def unwrap_single_exception() -> Iterator[None]:
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = leaf_exceptions(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
