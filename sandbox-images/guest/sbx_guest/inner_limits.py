"""Limits the guest enforces itself, where the runtime's cgroups do not mean what the user set.

Under gVisor (``runsc``) the container's cgroups hold the gVisor kernel, not
the user's processes: with the ptrace platform every sandboxed process costs
about ten host tasks, and the whole sandbox's memory is one host process.
The engine's pids limit would stop the runtime itself (it panics and the
sandbox dies), and the host's OOM killer would take the gVisor kernel.  So
the host raises both limits by the runtime's overhead and tells the guest
the limits the user set (``inner_limits`` in the handshake), which it
enforces inside:

- processes: every process the guest starts gets ``RLIMIT_NPROC`` = the
  pids limit (soft and hard; raising it needs a capability no command has).
  gVisor counts every task of the user's uid, threads included, root's
  too, so a fork bomb gets EAGAIN at the limit, as a pids cgroup gives.
- memory: a watcher reads the sandbox's memory in use (``/proc/meminfo``,
  which gVisor computes for the whole sandbox) and, past the limit -- confirmed
  by the resident sets and the tmpfs mounts, since meminfo lags --
  SIGKILLs the process the kernel's OOM killer would pick (the largest
  resident set, weighted by ``oom_score_adj``), never the guest.  Its kills
  count as OOM kills (``oom_kill_count``), so results report them as runc's.

Must not: touch a process of the guest's own uid, or poll when no limit was asked for.
"""

from __future__ import annotations

import os
import signal
import time

from .logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Any, Optional, Tuple

    from .loop import Loop, Timer

_CALM_POLL = 0.1
"""Between checks while use is under three quarters of the limit (at 1.5 GB/s, the
fastest allocation seen under gVisor here, a quarter of a 1 GiB limit takes 0.17 s)."""
_BUSY_POLL = 0.02
_SETTLE_AT_MOST = 10.0
"""After a kill, the longest wait for the victim's memory to show as released."""
_GROWTH = 64 << 20
"""Growth past the use at a kill that means another process is eating memory meanwhile."""
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class InnerLimits:
    """The pids and memory limits the guest applies to what it starts (off by default)."""

    def __init__(self) -> None:
        self.pids: Optional[int] = None
        self.memory: Optional[int] = None
        self.kills = 0
        """Processes killed for memory: added to the cgroup's OOM-kill counter."""
        self._loop: Optional[Loop] = None
        self._timer: Optional[Timer] = None
        self._victim: Optional[int] = None
        self._killed_at = 0.0
        self._used_at_kill = 0
        self._victim_rss = 0
        self._resource: Any = None

    def configure(self, settings: Optional[dict], loop: Loop) -> None:
        if not settings:
            return
        if settings.get("pids"):
            import resource  # here, once: a child that imported it would load it every time

            self.pids = int(settings["pids"])
            self._resource = resource
        if settings.get("memory"):
            self.memory = int(settings["memory"])
            self._loop = loop
            self._timer = loop.call_later(_CALM_POLL, self._check)
        log("inner limits on", pids=self.pids, memory=self.memory)

    def apply_in_child(self) -> None:
        """In a forked child before it changes user: the process limit, for good."""
        if self.pids is not None and self._resource is not None:
            limit = self._resource.RLIMIT_NPROC
            self._resource.setrlimit(limit, (self.pids, self.pids))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- memory -------------------------------------------------------------

    def _check(self) -> None:
        self._timer = None
        if self.memory is None or self._loop is None:
            return
        used = memory_in_use()
        if used is not None and used <= self.memory:
            self._victim = None  # whatever was killed last has given its memory back
        elif used is not None and not self._settling(used) and confirmed_use() > self.memory:
            self._kill_largest(used)
        busy = used is not None and used * 4 > self.memory * 3
        self._timer = self._loop.call_later(_BUSY_POLL if busy else _CALM_POLL, self._check)

    def _settling(self, used: int) -> bool:
        """A process killed a moment ago is still giving its memory back: not another yet.

        gVisor gives a dead process's pages back lazily (a second or more on a busy
        host), so until half of the victim's resident set shows as released -- or use
        grows well past what it was at the kill, or 10 s pass -- nothing else is killed.
        """
        if self._victim is None:
            return False
        recent = time.monotonic() < self._killed_at + _SETTLE_AT_MOST
        released = used <= self._used_at_kill - self._victim_rss // 2
        growing = used > self._used_at_kill + _GROWTH
        if recent and not released and not growing:
            return True
        self._victim = None
        return False

    def _kill_largest(self, used: int) -> None:
        victim = pick_victim(os.getuid(), os.getpid())
        if victim is None:
            return
        pid, rss = victim
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return
        self.kills += 1
        self._victim = pid
        self._killed_at = time.monotonic()
        self._used_at_kill = used
        self._victim_rss = rss
        log("out of memory: killed the largest process", pid=pid, rss=rss, limit=self.memory)


def memory_in_use() -> Optional[int]:
    """Bytes in use in the whole sandbox (MemTotal - MemAvailable), or None if unreadable."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        total = int(fields["MemTotal"].split()[0])
        available = int(fields["MemAvailable"].split()[0])
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return (total - available) * 1024


def confirmed_use() -> int:
    """What the processes hold now (resident sets) plus what the tmpfs mounts hold.

    The second opinion before a kill: gVisor's /proc/meminfo gives a dead process's
    pages back late, and on a busy host a stale figure would cost an innocent process
    its life; a process that has died has no resident set here.
    """
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/statm" % name) as f:
                    total += int(f.read().split()[1]) * _PAGE
            except (OSError, ValueError, IndexError):
                continue
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[2:3] == ["tmpfs"]]
    except OSError:
        mounts = []
    for mount in mounts:
        try:
            st = os.statvfs(mount)
        except OSError:
            continue
        total += (st.f_blocks - st.f_bfree) * st.f_frsize
    return total


def pick_victim(guest_uid: int, guest_pid: int) -> Optional[Tuple[int, int]]:
    """``(pid, rss)`` of the process to kill: the largest resident set, each page weighted
    by ``oom_score_adj`` like the kernel's OOM killer; never pid 1 or the guest's uid."""
    best: Optional[Tuple[int, int]] = None
    best_score = -1
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid in (1, guest_pid):
            continue
        try:
            if os.stat("/proc/%d" % pid).st_uid == guest_uid:
                continue
            with open("/proc/%d/statm" % pid) as f:
                rss = int(f.read().split()[1]) * _PAGE
            adj = 0
            with open("/proc/%d/oom_score_adj" % pid) as f:
                adj = int(f.read().strip() or 0)
        except (OSError, ValueError, IndexError):
            continue
        if adj <= -1000:
            continue
        score = rss + rss * adj // 1000
        if score > best_score:
            best, best_score = (pid, rss), score
    return best


limits = InnerLimits()
"""The guest's one set of inner limits (configured from the handshake)."""
