"""Persistent, named shells: cwd, variables and functions survive between commands.

Each shell is one ``bash`` (``sh`` where there is no bash) reading its script
from a pipe.  A command is sent as a fixed wrapper line followed by the
command text and a NUL; the wrapper ``read``s the text and ``eval``s it with
stdin from ``/dev/null`` (so the command can never swallow the control pipe),
then prints an end marker with the exit status on stdout and one on stderr.
Bash reads a script from a pipe one byte at a time, so the command text is
seen by ``read`` and never by the parser.

On timeout or cancel the shell's *children* are killed (TERM, then KILL), so
the shell and its state survive; if the marker still does not come (a busy
loop in the shell itself), the shell is killed and the next command starts a
fresh one, which the result reports.  Must not: let the shell's parser see
a command's text, or kill the shell where killing its children will do.
"""

from __future__ import annotations

import binascii
import os
import signal
import time

from . import protocol
from .calls import RunningCall
from .errors import CallError
from .loop import Loop
from .pipes import OutputSink, RequestPipe, set_nonblocking
from .proctree import ExitWatcher, descendants, signal_tree
from .spawn import enter_directory, leave_directory, spawn

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Callable, Dict, Optional, Set

    Send = Callable[[bytes], None]


_WRAPPER = (
    "IFS= read -r -d '' __sbx_cmd; eval \"$__sbx_cmd\" < /dev/null; __sbx_rc=$?; "
    "printf '\\036%s %d\\036' {tok} \"$__sbx_rc\"; printf '\\036%s\\036' {tok} >&2\n"
)


class Shell:
    """One long-lived shell process and the command it is running, if any."""

    def __init__(
        self,
        loop: Loop,
        name: str,
        defaults: dict,
        env: Optional[dict],
        user: Optional[str] = None,
    ) -> None:
        self.loop = loop
        self.name = name
        self.token = "SBX" + binascii.hexlify(os.urandom(8)).decode()
        self.current: Optional["ShellCommand"] = None
        self.dead = False
        if not os.path.exists("/bin/bash"):
            raise CallError(protocol.E_INTERNAL, "persistent shells need /bin/bash in the image")
        program = ["/bin/bash", "--noprofile", "--norc"]
        full_env = dict(os.environ)
        full_env.update({str(k): str(v) for k, v in (env or {}).items()})
        full_env.setdefault("PS1", "")
        cwd = defaults.get("workdir")
        if cwd and not os.path.isdir(cwd):
            cwd = None
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            if cwd is not None:
                enter_directory(cwd)
            try:
                self.pid = spawn(program[0], program, full_env, in_r, out_w, err_w, user=user)
            finally:
                if cwd is not None:
                    leave_directory()
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        self.stdin_fd: Optional[int] = in_w
        self.stdout_fd: Optional[int] = out_r
        self.stderr_fd: Optional[int] = err_r
        self.watcher = ExitWatcher(loop, self.pid, self._exited)
        self.status: Optional[int] = None
        self.commands = RequestPipe(loop, in_w)

    def _exited(self, status: int) -> None:
        self.status = status
        self.dead = True
        if self.current is not None:
            self.current.shell_exited(status)

    def send_command(self, command: str) -> None:
        """Start writing ``command`` to the shell (never blocking: ``RequestPipe``)."""
        data = _WRAPPER.format(tok=self.token).encode() + command.encode("utf-8", "surrogateescape")
        if self.stdin_fd is None:
            raise CallError(protocol.E_INTERNAL, "the shell's command pipe is closed")
        try:
            self.commands.write(data + b"\0")
        except OSError as exc:
            raise CallError(
                protocol.E_INTERNAL, "the shell stopped reading commands: %s" % exc
            ) from None

    def kill(self) -> None:
        if not self.dead:
            signal_tree(self.pid, descendants(self.pid), signal.SIGKILL)
        self.close_fds()

    def close_fds(self) -> None:
        for attr in ("stdin_fd", "stdout_fd", "stderr_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                self.loop.remove_reader(fd)
                if fd == self.commands.fd:
                    self.commands.stop()
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, attr, None)


class _MarkerReader:
    """Forwards a shell's output to the current command until the end marker.

    Holds back only as many trailing bytes as could be the start of a marker.
    """

    def __init__(self, stream: int, marker: bytes, sink: OutputSink) -> None:
        self.stream = stream
        self.marker = marker
        self.sink = sink
        self.held = b""
        self.found: Optional[bytes] = None  # bytes after the marker prefix up to its end

    def feed(self, data: bytes) -> None:
        buf = self.held + data
        idx = buf.find(self.marker)
        if idx >= 0:
            end = buf.find(b"\x1e", idx + len(self.marker))
            if idx:
                self.sink.emit(self.stream, buf[:idx])
            if end < 0:
                self.held = buf[idx:]
                return
            self.found = buf[idx + len(self.marker) : end]
            self.held = b""
            return
        keep = 0
        for size in range(min(len(self.marker) - 1, len(buf)), 0, -1):
            if self.marker.startswith(buf[-size:]):
                keep = size
                break
        if len(buf) - keep:
            self.sink.emit(self.stream, buf[: len(buf) - keep])
        self.held = buf[len(buf) - keep :] if keep else b""

    def flush(self) -> None:
        if self.held:
            self.sink.emit(self.stream, self.held)
            self.held = b""


class ShellCommand(RunningCall):
    """One ``shell.run`` call on a ``Shell``."""

    def __init__(
        self,
        loop: Loop,
        call_id: int,
        shell: Shell,
        args: dict,
        send: Send,
        done: Callable[[int], None],
        defaults: dict,
        restarted: bool,
    ) -> None:
        command = args.get("command")
        if not isinstance(command, str):
            raise CallError(protocol.E_BAD_REQUEST, "shell.run needs 'command' (a string)")
        if "\0" in command:
            raise CallError(protocol.E_BAD_REQUEST, "a shell command cannot contain NUL bytes")
        super().__init__(loop, call_id, send, done)
        self.shell = shell
        self.restarted = restarted
        sink = self._apply_limits(args, defaults)
        self.shell_killed = False
        self.term_pids: Set[int] = set()
        token = shell.token.encode()
        self.out = _MarkerReader(protocol.STDOUT, b"\x1e" + token + b" ", sink)
        self.err = _MarkerReader(protocol.STDERR, b"\x1e" + token, sink)
        shell.current = self
        self._callbacks: Dict[int, Callable[[], None]] = {}
        for fd, parser in ((shell.stdout_fd, self.out), (shell.stderr_fd, self.err)):
            set_nonblocking(fd)
            self._watch(fd, parser)
        shell.send_command(command)
        self._arm_timeout(args)

    def _watch(self, fd: int, parser: _MarkerReader) -> None:
        def readable() -> None:
            try:
                data = os.read(fd, self.sink.read_size())
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(fd)
                return  # the shell died; its exit watcher reports it
            parser.feed(data)
            if self.sink.blocked:
                self._pause()
            self._maybe_finish()

        self._callbacks[fd] = readable
        self.loop.add_reader(fd, readable)

    def _pause(self) -> None:
        for fd in self._callbacks:
            self.loop.remove_reader(fd)

    def _resume(self) -> None:
        if self.finished:
            return
        for fd, callback in self._callbacks.items():
            self.loop.add_reader(fd, callback)

    # -- stopping ---------------------------------------------------------------

    def _interrupt(self) -> None:
        """TERM the shell's children: the shell itself, and its state, stay."""
        self.term_pids = descendants(self.shell.pid)
        signal_tree(None, self.term_pids, signal.SIGTERM)

    def _force(self) -> None:
        self.term_pids |= descendants(self.shell.pid)
        signal_tree(None, self.term_pids, signal.SIGKILL)
        # A loop in the shell itself (no child to kill) never reaches the marker.
        self.later(1.0, self._kill_shell)

    def _kill_shell(self) -> None:
        if not self.finished:
            self.shell_killed = True
            self.shell.kill()
            self.shell.dead = True
            self._finish(exit_code=128 + signal.SIGKILL, signal_number=signal.SIGKILL)

    def _abandon(self) -> None:
        self.shell.kill()

    def shell_exited(self, status: int) -> None:
        """The command ended the shell (``exit``, ``exec``, a fatal signal)."""
        if self.finished:
            return
        for fd in list(self._callbacks):
            # Read what the shell wrote before it died.
            parser = self.out if fd == self.shell.stdout_fd else self.err
            try:
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    parser.feed(data)
            except OSError:
                pass
        self.out.flush()
        self.err.flush()
        code = os.waitstatus_to_exitcode(status)
        sig = -code if code < 0 else None
        self.shell_killed = True
        self.shell.close_fds()
        self._finish(exit_code=128 + sig if sig else code, signal_number=sig)

    # -- result -------------------------------------------------------------------

    def _maybe_finish(self) -> None:
        if self.finished or self.out.found is None or self.err.found is None:
            return
        try:
            code = int(self.out.found.decode())
        except ValueError:
            code = -1
        self._finish(exit_code=code, signal_number=None)

    def _finish(self, exit_code: int, signal_number: Optional[int]) -> None:
        result = {
            "exit_code": exit_code,
            "signal": signal_number,
            "timed_out": self.reason == "timeout",
            "cancelled": self.reason == "cancel",
            "oom_killed": self.oom_struck(),
            "duration": time.monotonic() - self.started,
            "shell_restarted": self.restarted,
            "shell_exited": self.shell_killed,
        }
        result.update(self.sink.summary())
        self.answer(result)

    def _release(self) -> None:
        if not self.shell.dead:
            for fd in self._callbacks:
                self.loop.remove_reader(fd)
        if self.shell.current is self:
            self.shell.current = None


class ShellRegistry:
    """The guest's named shells."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.shells: Dict[str, Shell] = {}

    def run(
        self, call_id: int, args: dict, send: Send, done: Callable[[int], None], defaults: dict
    ) -> ShellCommand:
        name = str(args.get("name") or "default")
        shell = self.shells.get(name)
        restarted = False
        if shell is not None and shell.dead:
            shell.close_fds()
            shell = None
            restarted = True
        if shell is not None and shell.current is not None:
            raise CallError(
                protocol.E_BUSY,
                "shell %r is still running a command; wait for it, cancel it, or use "
                "another shell name" % name,
            )
        if shell is None:
            shell = Shell(self.loop, name, defaults, args.get("env"), args.get("user"))
            self.shells[name] = shell
        return ShellCommand(self.loop, call_id, shell, args, send, done, defaults, restarted)

    def restart(self, args: dict, defaults: dict) -> dict:
        name = str(args.get("name") or "default")
        old = self.shells.pop(name, None)
        if old is not None:
            if old.current is not None:
                old.current.kill_now()
            old.kill()
        self.shells[name] = Shell(self.loop, name, defaults, args.get("env"), args.get("user"))
        return {"name": name, "restarted": old is not None}

    def close(self, args: dict) -> dict:
        name = str(args.get("name") or "default")
        old = self.shells.pop(name, None)
        if old is not None:
            old.kill()
        return {"name": name, "closed": old is not None}

    def kill_all(self) -> None:
        for shell in self.shells.values():
            shell.kill()
        self.shells.clear()
