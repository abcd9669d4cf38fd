"""The desktop's own processes -- Xvfb, the window manager, x11vnc -- started and watched.

They run as the sandbox user, through ``spawn`` like any process of the
sandbox: the user's programs talk to them (a compromised X server must gain
nothing the user's own code does not have), and the guest reads their
framebuffer as the user.  Their output goes to a log file under ``RUNTIME_DIR``,
whose tail goes into error messages because it is what says why a server
failed.  Each exit is watched on the loop and handed to the desktop, which
decides what it means.  Must not: wait for a process, or decide what an exit
means.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Dict, List, Optional

from . import protocol
from .errors import CallError
from .proctree import ExitWatcher, signal_tree
from .spawn import devnull, spawn

RUNTIME_DIR = "/tmp/sbx-desktop"
"""Framebuffers, logs and (where HOME is read-only) the window manager's settings."""


def tail(path: str, size: int = 1500) -> str:
    """The last ``size`` bytes of a log, as text ("" when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def describe_status(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return "was killed by signal %d" % -code if code < 0 else "exited with status %d" % code


class Child:
    """A helper process the desktop supervises (Xvfb, the window manager, x11vnc)."""

    def __init__(
        self,
        guest: Any,
        name: str,
        argv: List[str],
        env: Dict[str, str],
        log_path: str,
        on_exit: Callable[["Child", int], None],
        extra_fd: Optional[int] = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.status: Optional[int] = None
        self._on_exit = on_exit
        program = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
        extra = ((extra_fd, 3),) if extra_fd is not None else ()
        try:
            logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                self.pid = spawn(program, argv, env, devnull(), logfd, logfd, dup_fds=extra)
            finally:
                os.close(logfd)
        except OSError as exc:
            raise CallError(
                protocol.E_DESKTOP,
                "cannot start %s (%s): %s; is it installed in the image?" % (name, argv[0], exc),
            ) from None
        self.watcher = ExitWatcher(guest.loop, self.pid, self._exited)

    @property
    def alive(self) -> bool:
        return self.status is None

    def _exited(self, status: int) -> None:
        self.status = status
        self._on_exit(self, status)

    def signal(self, sig: int) -> None:
        if self.alive:
            signal_tree(self.pid, set(), sig)

    def log_tail(self) -> str:
        return tail(self.log_path)
