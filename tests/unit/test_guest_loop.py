"""The guest's event loop: timers fire in order, cancelled ones do not pile up."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture
def loop_module(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("loop")


def test_timers_fire_in_deadline_order(loop_module: ModuleType) -> None:
    loop = loop_module.Loop()
    fired: list[str] = []
    loop.call_later(0.03, lambda: fired.append("late"))
    loop.call_later(0.01, lambda: fired.append("early"))
    cancelled = loop.call_later(0.02, lambda: fired.append("cancelled"))
    cancelled.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run()
    assert fired == ["early", "late"]


def test_cancelled_timers_are_swept_out(loop_module: ModuleType) -> None:
    loop = loop_module.Loop()
    for _ in range(10_000):
        loop.call_later(600, lambda: None).cancel()  # like a command's timeout, once it ended
    assert loop.pending_timers < 2100
