"""The guest's memory watcher under gVisor: it kills past the limit, once per death, and
counts its kills as OOM kills.  No real process is signalled: the reading of memory,
the choice of victim and the kill are stand-ins."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

LIMIT = 1000 << 20


class _World:
    def __init__(self, module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
        self.used = 100 << 20
        self.confirmed = 100 << 20
        self.killed: list[int] = []
        self.next_pid = 100
        monkeypatch.setattr(module, "memory_in_use", lambda: self.used)
        monkeypatch.setattr(module, "confirmed_use", lambda: self.confirmed)
        monkeypatch.setattr(module, "pick_victim", lambda uid, pid: (self.next_pid, 800 << 20))
        monkeypatch.setattr(module.os, "kill", lambda pid, sig: self.killed.append(pid))


class _Loop:
    def call_later(self, delay: float, callback: Callable[[], None]) -> object:
        return _Timer()


class _Timer:
    def cancel(self) -> None:
        pass


@pytest.fixture
def limits(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("inner_limits")


def _watcher(limits: ModuleType) -> object:
    watcher = limits.InnerLimits()
    watcher.configure({"pids": 64, "memory": LIMIT}, _Loop())
    return watcher


def test_past_the_limit_the_largest_process_is_killed_once_while_its_memory_comes_back(
    limits: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _World(limits, monkeypatch)
    watcher = _watcher(limits)
    watcher._check()
    assert world.killed == [] and watcher.kills == 0  # under the limit
    world.used = world.confirmed = LIMIT + (10 << 20)
    watcher._check()
    assert world.killed == [100] and watcher.kills == 1
    # meminfo still shows the dead process's pages, and the victim's are gone from
    # the resident sets: nobody else dies for a stale figure.
    world.next_pid = 101
    world.confirmed = 200 << 20
    for _ in range(5):
        watcher._check()
    assert world.killed == [100]
    # Back under the limit, then another process eats past it: it goes too.
    world.used = world.confirmed = 100 << 20
    watcher._check()
    world.used = world.confirmed = LIMIT + (1 << 20)
    watcher._check()
    assert world.killed == [100, 101] and watcher.kills == 2


def test_a_stale_meminfo_alone_kills_nothing(
    limits: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _World(limits, monkeypatch)
    watcher = _watcher(limits)
    world.used = 2 * LIMIT  # meminfo says over; the processes and mounts hold little
    watcher._check()
    assert world.killed == []


def test_the_guests_kills_count_as_oom_kills(
    guest_module: Callable[[str], ModuleType], limits: ModuleType
) -> None:
    proctree = guest_module("proctree")
    before = proctree.oom_kill_count()
    proctree.limits.memory = LIMIT
    proctree.limits.kills += 2
    try:
        after = proctree.oom_kill_count()
        assert after == (before or 0) + 2
    finally:
        proctree.limits.kills -= 2
        proctree.limits.memory = None
