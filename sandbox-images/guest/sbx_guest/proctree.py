"""The process trees the guest starts: finding, signalling and reaping them.

A command runs in its own session, but what it starts may leave the group
(``setsid``, a daemon), so stopping a command means its group *and* every
descendant found in ``/proc``.  A child's exit is noticed through a pidfd on
the event loop (polled where the kernel has none), never by blocking in
``wait``.  The cgroup's OOM-kill counter tells a death by the OOM killer
from any other SIGKILL.  Must not: signal anything but the trees the caller
names, or wait for a process (the guest has one thread).
"""

from __future__ import annotations

import os

from .inner_limits import limits

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Callable, Dict, List, Optional, Set

    from .loop import Loop, Timer


def _parents() -> Dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    table: Dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields follow the last ')'.
        rest = stat[stat.rfind(b")") + 2 :].split()
        if len(rest) >= 2:
            table[int(name)] = int(rest[1])
    return table


def descendants(root: int) -> Set[int]:
    """Every live process whose ancestry leads to ``root`` (``root`` excluded)."""
    parents = _parents()
    children: Dict[int, List[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: Set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def signal_tree(pgid: Optional[int], pids: Set[int], sig: int) -> None:
    """Send ``sig`` to a process group and to extra pids, ignoring the already gone."""
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


_OOM_SOURCES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
_oom_path: Optional[str] = None


def oom_kill_count() -> Optional[int]:
    """The cgroup's OOM-kill counter (v2 or v1) plus the guest's own memory kills
    (``inner_limits``, under gVisor), or None where neither is known."""
    global _oom_path
    own = limits.kills if limits.memory is not None else None
    for path in (_oom_path,) if _oom_path else _OOM_SOURCES:
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        _oom_path = path
                        return int(value) + (own or 0)
        except (OSError, ValueError):
            continue
    return own


class ExitWatcher:
    """Calls back once a child exits: through a pidfd, or by polling where there is none."""

    POLL = 0.02

    def __init__(self, loop: Loop, pid: int, on_exit: Callable[[int], None]) -> None:
        self.loop = loop
        self.pid = pid
        self.on_exit = on_exit
        self.pidfd: Optional[int] = None
        self.timer: Optional[Timer] = None
        self.done = False
        try:
            self.pidfd = os.pidfd_open(pid)  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            self.pidfd = None
        if self.pidfd is not None:
            loop.add_reader(self.pidfd, self._check)
        else:
            self.timer = loop.call_later(self.POLL, self._poll)

    def _poll(self) -> None:
        self.timer = None
        self._check()
        if not self.done:
            self.timer = self.loop.call_later(self.POLL, self._poll)

    def _check(self) -> None:
        if self.done:
            return
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        self.done = True
        self.close()
        self.on_exit(status)

    def close(self) -> None:
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
