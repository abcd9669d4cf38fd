"""Starting the processes that run the user's code: the one ``spawn`` and what it needs.

Every process that runs in the sandbox -- a command, a shell, an
interpreter, the desktop's servers -- is started by ``spawn``, as the
sandbox user, in a session of its own, with exactly the descriptors it is
given (the guest's own are all close-on-exec), so whatever the guest
changes about how processes start -- their user, their limits -- changes
here alone.  Around ``spawn``:
PATH lookups and working directories, both cached, because on a FUSE-backed
root every path lookup is a round trip.  Must not: start user code any
other way, or hand a child a descriptor it was not given.
"""

from __future__ import annotations

import os
import signal

from .inner_limits import limits
from .privileges import Person, identity

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Dict, List, Optional, Tuple

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RESET_SIGNALS = {signal.SIGPIPE, signal.SIGXFSZ}
"""Python ignores these; ignored dispositions survive exec, so children get them back."""


def spawn(
    program: str,
    argv: List[str],
    env: Dict[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
    pass_fds: Tuple[int, ...] = (),
    dup_fds: Tuple[Tuple[int, int], ...] = (),
    user: Optional[str] = None,
) -> int:
    """Start ``program`` as the sandbox user, in a new session, with the given descriptors.

    ``pass_fds`` stay open in the child under their own numbers (an
    interpreter's control pipes); ``dup_fds`` are ``(fd, number)`` pairs
    placed at ``number``.  It has no working-directory option, so the guest
    -- single-threaded -- steps into the command's directory around it
    (``enter_directory``); for the same reason no other spawn can inherit
    ``pass_fds`` meanwhile.

    A guest out of the user's reach (``privileges``) forks, and the child
    becomes the user -- the session's, or ``user`` (``root``, a name,
    ``uid[:gid]``) -- before exec; otherwise ``posix_spawn`` (clone+exec in
    glibc), which costs less, starts it as the guest itself.
    """
    person = identity.person(user)
    if user is not None:
        env = person.environ(dict(env))
        if not identity.privileged and person.uid != os.getuid():
            raise PermissionError(1, "this guest cannot start processes as another user")
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    try:
        if identity.privileged:
            return _fork_as_user(program, argv, env, (stdin, stdout, stderr), dup_fds, person)
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        actions += [(os.POSIX_SPAWN_DUP2, fd, number) for fd, number in dup_fds]
        return os.posix_spawn(
            program, argv, env, file_actions=actions, setsid=True, setsigdef=_RESET_SIGNALS
        )
    finally:
        for fd in pass_fds:
            os.set_inheritable(fd, False)


def _fork_as_user(
    program: str,
    argv: List[str],
    env: Dict[str, str],
    standard: Tuple[int, int, int],
    dup_fds: Tuple[Tuple[int, int], ...],
    person: Person,
) -> int:
    """fork, become the user, exec; an exec failure comes back as the ``OSError`` it was.

    The child runs only this function between fork and exec (the guest is
    single-threaded, so that is safe) and never returns into the guest.
    """
    report_r, report_w = os.pipe()  # close-on-exec: EOF without data means exec succeeded
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            try:
                signal.set_wakeup_fd(-1)
                os.setsid()
                targets = [(fd, number) for number, fd in enumerate(standard)] + list(dup_fds)
                # Move every source out of the way first, so no dup2 clobbers a later source.
                moved = [(os.dup(fd), number) for fd, number in targets]
                for fd, number in moved:
                    os.dup2(fd, number)
                for sig in _RESET_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                limits.apply_in_child()
                identity.child(person)
                os.execve(program, argv, env)
            except OSError as exc:
                os.write(report_w, b"%d" % (exc.errno or 0))
            except BaseException:
                os.write(report_w, b"0")
            finally:
                os._exit(127)
        os.close(report_w)
        report_w = -1
        answer = b""
        while True:
            chunk = os.read(report_r, 64)
            if not chunk:
                break
            answer += chunk
        if answer:
            os.waitpid(pid, 0)
            errno = int(answer) if answer.isdigit() else 0
            raise OSError(errno, os.strerror(errno) if errno else "the child failed before exec")
        return pid
    finally:
        os.close(report_r)
        if report_w >= 0:
            os.close(report_w)


_devnull: Optional[int] = None


def devnull() -> int:
    """One /dev/null descriptor for every child's stdin, opened once."""
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull


# -- programs -----------------------------------------------------------------


_resolved: Dict[Tuple[str, str], str] = {}
"""PATH lookups already done: on an overlay root every miss is a slow lookup,
and the same few programs run again and again.  A stale entry is dropped when
spawning it fails (``forget``)."""


def which(name: str, path: str) -> Optional[str]:
    """``name`` resolved on ``path`` (the command's own PATH), like a shell would."""
    if "/" in name:
        return name
    hit = _resolved.get((name, path))
    if hit is not None:
        return hit
    for folder in path.split(":"):
        candidate = os.path.join(folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            if folder.startswith("/"):
                if len(_resolved) > 4096:
                    _resolved.clear()
                _resolved[(name, path)] = candidate
            return candidate
    return None


def forget(name: str, path: str) -> bool:
    """Drop the cached lookup of ``name`` on ``path``; False if there was none."""
    return _resolved.pop((name, path), None) is not None


_shell_argv: Optional[List[str]] = None


def shell_argv() -> List[str]:
    """The shell for string commands, looked up once (a lookup per command is not free)."""
    global _shell_argv
    if _shell_argv is None:
        _shell_argv = ["/bin/bash", "-c"] if os.path.exists("/bin/bash") else ["/bin/sh", "-c"]
    return _shell_argv


# -- working directories --------------------------------------------------------


_root_fd: Optional[int] = None
_pinned: Dict[str, Optional[int]] = {}
"""Working directories that are mount points, by path, with a descriptor kept open.

Every path lookup costs a round trip to the engine's storage driver where that
is FUSE (about 70 us here, three per command before), while ``fchdir`` on a
kept descriptor costs under a microsecond.  Only mount points are pinned: the
sandbox cannot unmount, remove or rename them, so the descriptor always names
what the path names.  Any other directory is looked up afresh every time, so
a directory removed and made again (or renamed away) is never stale."""


def _root() -> int:
    global _root_fd
    if _root_fd is None:
        _root_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return _root_fd


def enter_directory(cwd: str) -> None:
    """``chdir`` into ``cwd``, cheaply when it is a mount point (see ``_pinned``)."""
    if cwd not in _pinned:
        fd: Optional[int] = None
        if os.path.isabs(cwd) and os.path.normpath(cwd) == cwd and os.path.ismount(cwd):
            fd = os.open(cwd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if len(_pinned) > 1024:
            for stale in _pinned.values():
                if stale is not None:
                    os.close(stale)
            _pinned.clear()
        _pinned[cwd] = fd
    fd = _pinned[cwd]
    if fd is None:
        os.chdir(cwd)
    else:
        os.fchdir(fd)


def leave_directory() -> None:
    """Back to ``/``, the guest's own working directory (every path it handles is absolute)."""
    os.fchdir(_root())
