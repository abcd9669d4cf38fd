"""Processes in the sandbox: spawning, streaming output, killing whole trees.

A command is started in its own session (so its process group id is its pid),
its output is read without blocking and sent as ``out`` frames within the
call's flow-control credit, and on timeout or cancel the whole group -- plus
any descendant that left the group with ``setsid`` -- gets TERM, then KILL
after a grace period.
"""

from __future__ import annotations

import errno
import os
import signal
import time

from . import protocol
from .errors import CallError
from .loop import Loop, Timer

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Callable, Dict, List, Optional, Set, Tuple

    Send = Callable[[bytes], None]

READ_SIZE = 64 * 1024
DRAIN_AFTER_EXIT = 0.25
"""After the main process exits, how long to wait for a quiet pipe still held open
by a background child before giving up on it."""


# -- process tree helpers ---------------------------------------------------


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
_oom_seen: Optional[int] = None


def oom_kill_count() -> Optional[int]:
    """The cgroup's OOM-kill counter (v2 or v1), or None where the kernel hides it."""
    global _oom_path
    for path in (_oom_path,) if _oom_path else _OOM_SOURCES:
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        _oom_path = path
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def oom_killed_since_last_check() -> bool:
    """Whether the OOM killer struck since the previous check (or since start).

    Read only when a process died of SIGKILL, so the common path pays nothing;
    with two processes killed at once both may be reported, which errs on the
    side of telling the user about memory.
    """
    global _oom_seen
    now = oom_kill_count()
    if now is None:
        return False
    before, _oom_seen = _oom_seen, now
    return before is not None and now > before


def prime_oom_counter() -> None:
    global _oom_seen
    _oom_seen = oom_kill_count()


_devnull: Optional[int] = None


def devnull() -> int:
    """One /dev/null descriptor for every child's stdin, opened once."""
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull


def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


# -- output -----------------------------------------------------------------


class OutputSink:
    """Caps and flow-controls one call's output towards the host.

    ``credit`` is how many bytes the host will still accept; readers stop when
    it runs out and ``on_credit`` restarts them when the host grants more.
    Bytes past ``limit`` per stream are counted and dropped, never sent.
    """

    def __init__(self, call_id: int, send: Send, window: int, limit: int) -> None:
        self.call_id = call_id
        self._send = send
        self.credit = window
        self.limit = limit
        self.sent = {protocol.STDOUT: 0, protocol.STDERR: 0}
        self.total = {protocol.STDOUT: 0, protocol.STDERR: 0}
        self.truncated = {protocol.STDOUT: False, protocol.STDERR: False}
        self.on_credit: Optional[Callable[[], None]] = None

    @classmethod
    def for_call(cls, call_id: int, send: Send, args: dict, defaults: dict) -> "OutputSink":
        """The sink of a call, sized by its ``window``/``max_output`` or the guest's defaults."""
        return cls(
            call_id,
            send,
            int(args.get("window", protocol.DEFAULT_WINDOW)),
            int(args.get("max_output", defaults.get("max_output", 16 << 20))),
        )

    @property
    def blocked(self) -> bool:
        return self.credit <= 0

    def read_size(self) -> int:
        return max(1, min(READ_SIZE, self.credit))

    def emit(self, stream: int, data: bytes) -> None:
        self.total[stream] += len(data)
        room = self.limit - self.sent[stream]
        if room <= 0:
            self.truncated[stream] = True
            return
        if len(data) > room:
            data = data[:room]
            self.truncated[stream] = True
        self.sent[stream] += len(data)
        self.credit -= len(data)
        self._send(protocol.output(self.call_id, stream, data))

    def grant(self, credit: int) -> None:
        was_blocked = self.blocked
        self.credit += credit
        if was_blocked and not self.blocked and self.on_credit is not None:
            self.on_credit()

    def summary(self) -> Dict[str, object]:
        return {
            "stdout_bytes": self.total[protocol.STDOUT],
            "stderr_bytes": self.total[protocol.STDERR],
            "stdout_truncated": self.truncated[protocol.STDOUT],
            "stderr_truncated": self.truncated[protocol.STDERR],
            "truncated": self.truncated[protocol.STDOUT] or self.truncated[protocol.STDERR],
        }


class PipeReader:
    """Reads one pipe into a sink while the sink has credit."""

    def __init__(
        self, loop: Loop, fd: int, stream: int, sink: OutputSink, on_eof: Callable[[], None]
    ) -> None:
        self.loop = loop
        self.fd: Optional[int] = fd
        self.stream = stream
        self.sink = sink
        self.on_eof = on_eof
        self.on_data: Optional[Callable[[], None]] = None
        set_nonblocking(fd)
        self.resume()

    def resume(self) -> None:
        if self.fd is not None and not self.sink.blocked:
            self.loop.add_reader(self.fd, self._readable)

    def pause(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)

    def _readable(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, self.sink.read_size())
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return
            data = b""
        if not data:
            self.close()
            self.on_eof()
            return
        self.sink.emit(self.stream, data)
        if self.sink.blocked:
            self.pause()
        if self.on_data is not None:
            self.on_data()

    def drain_ready(self) -> None:
        """Read whatever is already in the pipe, without waiting for more."""
        while self.fd is not None and not self.sink.blocked:
            before = self.sink.total[self.stream]
            self._readable()
            if self.sink.total[self.stream] == before:
                return

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


class PipeWriter:
    """Feeds bytes to a process's stdin without blocking, then closes it."""

    def __init__(self, loop: Loop, fd: int, data: bytes) -> None:
        self.loop = loop
        self.fd: Optional[int] = fd
        self.data = memoryview(data)
        set_nonblocking(fd)
        if self.data:
            loop.add_writer(fd, self._writable)
        else:
            self.close()

    def _writable(self) -> None:
        if self.fd is None:
            return
        try:
            n = os.write(self.fd, self.data[:READ_SIZE])
        except BlockingIOError:
            return
        except OSError:
            self.close()  # the process closed its stdin (EPIPE): it does not want more
            return
        self.data = self.data[n:]
        if not self.data:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_writer(self.fd)
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


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


# -- exec -------------------------------------------------------------------


_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RESET_SIGNALS = {signal.SIGPIPE, signal.SIGXFSZ}
"""Python ignores these; ignored dispositions survive exec, so children get them back."""


_resolved: Dict[Tuple[str, str], str] = {}
"""PATH lookups already done: on an overlay root every miss is a slow lookup,
and the same few programs run again and again.  A stale entry is dropped when
spawning it fails (see ``ExecCall._spawn``)."""


def _which(name: str, path: str) -> Optional[str]:
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


def _enter_directory(cwd: str) -> None:
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


def _leave_directory() -> None:
    """Back to ``/``, the guest's own working directory (every path it handles is absolute)."""
    os.fchdir(_root())


def _spawn_process(
    program: str,
    argv: List[str],
    env: Dict[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
) -> int:
    """Start ``program`` in a new session with the given standard descriptors.

    ``posix_spawn`` (clone+exec in glibc) costs measurably less than Popen's
    fork/exec handshake on every command.  It has no working-directory option
    in Python, so the guest -- single-threaded -- steps into the command's
    directory around it (``_enter_directory``).
    """
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    return os.posix_spawn(
        program, argv, env, file_actions=actions, setsid=True, setsigdef=_RESET_SIGNALS
    )


def _enter_directory_for_call(cwd: str) -> None:
    """``_enter_directory``, its failures told the way the host expects."""
    try:
        _enter_directory(cwd)
    except (FileNotFoundError, NotADirectoryError):
        raise CallError(
            protocol.E_NOT_FOUND,
            "working directory %s does not exist in the sandbox; create it first "
            "or choose another working directory" % cwd,
        ) from None
    except PermissionError:
        raise CallError(
            protocol.E_PERMISSION,
            "working directory %s is not accessible to the sandbox user; choose another "
            "working directory or change its permissions" % cwd,
        ) from None


_shell_argv: Optional[List[str]] = None


def _shell() -> List[str]:
    """The shell for string commands, looked up once (a lookup per command is not free)."""
    global _shell_argv
    if _shell_argv is None:
        _shell_argv = ["/bin/bash", "-c"] if os.path.exists("/bin/bash") else ["/bin/sh", "-c"]
    return _shell_argv


class ExecCall:
    """One ``exec`` request: a process whose output streams until it ends.

    The result goes out only after the process has exited *and* its pipes
    are drained (or stay quiet for ``DRAIN_AFTER_EXIT`` because a background
    child holds them open).
    """

    def __init__(
        self,
        loop: Loop,
        call_id: int,
        args: dict,
        payload: bytes,
        send: Send,
        done: Callable[[int], None],
        defaults: dict,
    ) -> None:
        self.loop = loop
        self.call_id = call_id
        self._send = send
        self._done = done
        self.started = time.monotonic()
        self.grace = float(args.get("grace", defaults.get("kill_grace", 2.0)))
        self.sink = OutputSink.for_call(call_id, send, args, defaults)
        self.sink.on_credit = self._resume
        self.readers: Dict[int, PipeReader] = {}
        self.writer: Optional[PipeWriter] = None
        self.status: Optional[int] = None
        self.reason: Optional[str] = None  # "timeout" | "cancel" | "shutdown"
        self.term_pids: Set[int] = set()
        self.timers: List[Timer] = []
        self.drain_timer: Optional[Timer] = None
        self.finished = False
        self.pid = self._spawn(args, payload, defaults)
        self.pgid = self.pid
        self.watcher = ExitWatcher(loop, self.pid, self._exited)
        timeout = args.get("timeout")
        if timeout is not None:
            self.timers.append(loop.call_later(float(timeout), lambda: self.terminate("timeout")))

    def _spawn(self, args: dict, payload: bytes, defaults: dict) -> int:
        argv = args.get("argv")
        command = args.get("cmd")
        if argv is not None:
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise CallError(protocol.E_BAD_REQUEST, "argv must be a non-empty list of strings")
        elif isinstance(command, str):
            argv = [*_shell(), command]
        else:
            raise CallError(
                protocol.E_BAD_REQUEST, "exec needs 'argv' (a list) or 'cmd' (a string)"
            )
        cwd = args.get("cwd") or defaults.get("workdir") or None
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (args.get("env") or {}).items()})
        program = _which(argv[0], env.get("PATH", _DEFAULT_PATH))
        if program is None:
            return self._spawn_failure(argv[0], 127, "command not found")
        want_stdin = bool(args.get("stdin"))
        # Our descriptors are all close-on-exec; the child gets exactly 0, 1 and 2.
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if want_stdin else (devnull(), -1)
        try:
            if cwd is not None:
                _enter_directory_for_call(cwd)
            try:
                pid = _spawn_process(program, argv, env, in_r, out_w, err_w)
            except FileNotFoundError:
                # A cached lookup may be stale (the program moved): look it up afresh.
                path = env.get("PATH", _DEFAULT_PATH)
                if _resolved.pop((argv[0], path), None) is None:
                    raise
                program = _which(argv[0], path) or program
                pid = _spawn_process(program, argv, env, in_r, out_w, err_w)
        except CallError:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        except OSError as exc:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
            if isinstance(exc, FileNotFoundError):
                return self._spawn_failure(argv[0], 127, "command not found")
            if isinstance(exc, PermissionError):
                return self._spawn_failure(argv[0], 126, "Permission denied")
            return self._spawn_failure(argv[0], 126, exc.strerror or str(exc))
        finally:
            if cwd is not None:
                _leave_directory()
            os.close(out_w)
            os.close(err_w)
            if want_stdin:
                os.close(in_r)
        self.readers[protocol.STDOUT] = PipeReader(
            self.loop, out_r, protocol.STDOUT, self.sink, self._eof
        )
        self.readers[protocol.STDERR] = PipeReader(
            self.loop, err_r, protocol.STDERR, self.sink, self._eof
        )
        for reader in self.readers.values():
            reader.on_data = self._data_after_exit
        if want_stdin:
            self.writer = PipeWriter(self.loop, in_w, payload)
        return pid

    def _spawn_failure(self, program: str, code: int, message: str) -> int:
        """Report a program that cannot be started the way a shell would: 127/126 and a message."""
        return self._spawn(
            {
                "argv": [
                    "/bin/sh",
                    "-c",
                    'printf "%s\\n" "$1" >&2; exit ' + str(code),
                    "sbx",
                    "sbx: %s: %s" % (program, message),
                ]
            },
            b"",
            {},
        )

    # -- flow -----------------------------------------------------------------

    def _resume(self) -> None:
        for reader in self.readers.values():
            reader.resume()
        if self.status is not None:
            self._arm_drain()

    def grant(self, credit: int) -> None:
        self.sink.grant(credit)

    def _eof(self) -> None:
        self._maybe_finish()

    def _exited(self, status: int) -> None:
        self.status = status
        if self.reason is not None:
            # Timed out or cancelled: whatever the main process left behind goes too.
            signal_tree(self.pgid, self.term_pids, signal.SIGKILL)
        for reader in list(self.readers.values()):
            reader.drain_ready()
        self._arm_drain()
        self._maybe_finish()

    def _arm_drain(self) -> None:
        if self.drain_timer is not None:
            self.drain_timer.cancel()
        self.drain_timer = self.loop.call_later(DRAIN_AFTER_EXIT, self._give_up_draining)

    def _data_after_exit(self) -> None:
        if self.status is not None and not self.finished:
            self._arm_drain()

    def _give_up_draining(self) -> None:
        self.drain_timer = None
        if self.finished:
            return
        if self.sink.blocked and any(r.fd is not None for r in self.readers.values()):
            return  # waiting for the host to take more output, not for the pipe
        for reader in self.readers.values():
            reader.close()
        self._maybe_finish()

    # -- stopping ---------------------------------------------------------------

    def terminate(self, reason: str) -> None:
        """TERM the process tree now and KILL it after the grace period."""
        if self.status is not None or self.reason is not None:
            return
        self.reason = reason
        self.term_pids = descendants(self.pid)
        signal_tree(self.pgid, self.term_pids, signal.SIGTERM)
        self.timers.append(self.loop.call_later(self.grace, self._kill))

    def _kill(self) -> None:
        if self.status is None:
            self.term_pids |= descendants(self.pid)
            signal_tree(self.pgid, self.term_pids, signal.SIGKILL)

    def cancel(self) -> None:
        self.terminate("cancel")

    def kill_now(self) -> None:
        """Shutdown path: no grace, no result."""
        self.reason = self.reason or "shutdown"
        if self.status is None:
            signal_tree(self.pgid, descendants(self.pid), signal.SIGKILL)

    # -- result -------------------------------------------------------------------

    def _maybe_finish(self) -> None:
        if self.finished or self.status is None:
            return
        if any(reader.fd is not None for reader in self.readers.values()):
            return
        self.finished = True
        for timer in self.timers:
            timer.cancel()
        if self.drain_timer is not None:
            self.drain_timer.cancel()
        if self.writer is not None:
            self.writer.close()
        self.watcher.close()
        code = os.waitstatus_to_exitcode(self.status)
        sig = -code if code < 0 else None
        oom_killed = sig == signal.SIGKILL and self.reason is None and oom_killed_since_last_check()
        result = {
            "exit_code": 128 + sig if sig else code,
            "signal": sig,
            "timed_out": self.reason == "timeout",
            "cancelled": self.reason == "cancel",
            "oom_killed": oom_killed,
            "duration": time.monotonic() - self.started,
            "pid": self.pid,
        }
        result.update(self.sink.summary())
        self._send(protocol.result(self.call_id, result))
        self._done(self.call_id)
