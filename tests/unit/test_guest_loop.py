"""The guest's event loop: timers fire in order, cancelled ones do not pile up."""

from __future__ import annotations

import importlib
import sys

import pytest

from orchestrator.images.assets import assets_dir


@pytest.fixture
def loop_module():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(assets_dir() / "guest"))
    try:
        yield importlib.import_module("sbx_guest.loop")
    finally:
        sys.path.remove(str(assets_dir() / "guest"))


def test_timers_fire_in_deadline_order(loop_module) -> None:  # type: ignore[no-untyped-def]
    loop = loop_module.Loop()
    fired: list[str] = []
    loop.call_later(0.03, lambda: fired.append("late"))
    loop.call_later(0.01, lambda: fired.append("early"))
    cancelled = loop.call_later(0.02, lambda: fired.append("cancelled"))
    cancelled.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run()
    assert fired == ["early", "late"]


def test_cancelled_timers_are_swept_out(loop_module) -> None:  # type: ignore[no-untyped-def]
    loop = loop_module.Loop()
    for _ in range(10_000):
        loop.call_later(600, lambda: None).cancel()  # like a command's timeout, once it ended
    assert loop.pending_timers < 2100
