"""The ``exec`` operation: one command whose output streams until it ends.

The command is started by ``spawn`` with its output on two pipes and its
stdin from the request's payload (or /dev/null); its output goes to the host
through the call's sink.  A program that cannot be started is reported the
way a shell would (status 127 or 126 and a message on stderr), so callers
see one shape of result.  Must not: answer before the process has exited
and its pipes are drained, or leave anything it started running once it
has answered a timeout or a cancel.
"""

from __future__ import annotations

import os
import signal
import time

from . import protocol
from .calls import RunningCall
from .errors import CallError
from .pipes import PipeReader, PipeWriter
from .proctree import ExitWatcher, descendants, signal_tree
from .spawn import (
    DEFAULT_PATH,
    devnull,
    enter_directory,
    forget,
    leave_directory,
    shell_argv,
    spawn,
    which,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Callable, Dict, Optional, Set

    from .loop import Loop, Timer

    Send = Callable[[bytes], None]

DRAIN_AFTER_EXIT = 0.25
"""After the main process exits, how long to wait for a quiet pipe still held open
by a background child before giving up on it."""


def _enter_directory_for_call(cwd: str) -> None:
    """``enter_directory``, its failures told the way the host expects."""
    try:
        enter_directory(cwd)
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


class ExecCall(RunningCall):
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
        super().__init__(loop, call_id, send, done)
        self._apply_limits(args, defaults)
        self.readers: Dict[int, PipeReader] = {}
        self.writer: Optional[PipeWriter] = None
        self.status: Optional[int] = None
        self.term_pids: Set[int] = set()
        self.drain_timer: Optional[Timer] = None
        self.spawn_error: Optional[str] = None
        """``not_found`` or ``permission_denied`` when the program could not be started."""
        self.pid = self._spawn(args, payload, defaults)
        self.pgid = self.pid
        self.watcher = ExitWatcher(loop, self.pid, self._exited)
        self._arm_timeout(args)

    def _spawn(self, args: dict, payload: bytes, defaults: dict) -> int:
        argv = args.get("argv")
        command = args.get("cmd")
        if argv is not None:
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise CallError(protocol.E_BAD_REQUEST, "argv must be a non-empty list of strings")
        elif isinstance(command, str):
            argv = [*shell_argv(), command]
        else:
            raise CallError(
                protocol.E_BAD_REQUEST, "exec needs 'argv' (a list) or 'cmd' (a string)"
            )
        workdir = defaults.get("workdir") or None
        cwd = args.get("cwd") or workdir
        if cwd is not None and not cwd.startswith("/"):
            # A relative directory is the session's working directory's, as in a shell there.
            cwd = os.path.normpath(os.path.join(workdir or "/", cwd))
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (args.get("env") or {}).items()})
        program = which(argv[0], env.get("PATH", DEFAULT_PATH))
        if program is None:
            return self._spawn_failure(argv[0], 127, "command not found", "not_found")
        want_stdin = bool(args.get("stdin"))
        # Our descriptors are all close-on-exec; the child gets exactly 0, 1 and 2.
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if want_stdin else (devnull(), -1)
        try:
            if cwd is not None:
                _enter_directory_for_call(cwd)
            try:
                pid = spawn(program, argv, env, in_r, out_w, err_w, user=args.get("user"))
            except FileNotFoundError:
                # A cached lookup may be stale (the program moved): look it up afresh.
                path = env.get("PATH", DEFAULT_PATH)
                if not forget(argv[0], path):
                    raise
                program = which(argv[0], path) or program
                pid = spawn(program, argv, env, in_r, out_w, err_w, user=args.get("user"))
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
                return self._spawn_failure(argv[0], 127, "command not found", "not_found")
            if isinstance(exc, PermissionError):
                reason = exc.strerror or "Permission denied"
                return self._spawn_failure(argv[0], 126, reason, "permission_denied")
            return self._spawn_failure(argv[0], 126, exc.strerror or str(exc), "exec_failed")
        finally:
            if cwd is not None:
                leave_directory()
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
            streamed = args.get("stdin") == "stream"
            self.writer = PipeWriter(
                self.loop, in_w, payload, streamed=streamed, grant=self._grant_input
            )
        return pid

    def _grant_input(self, credit: int) -> None:
        self._send(protocol.window(self.call_id, credit))

    def feed(self, payload: bytes, eof: bool) -> None:
        """stdin from the host's ``data`` frames (``"stdin": "stream"``)."""
        if self.writer is not None and not self.finished:
            self.writer.feed(payload, eof)

    def _spawn_failure(self, program: str, code: int, message: str, kind: str) -> int:
        """Report a program that cannot be started the way a shell would: 127/126 and a message.

        The result also says so outright (``spawn_error``), so a caller need not
        guess from an exit status that the program itself may return.
        """
        self.spawn_error = kind
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
            if self.reason is not None:
                # Stopped (timeout, cancel): whatever still writes escaped the kill (a
                # fork bomb forks on meanwhile); kill its group again, and let it not
                # stretch the drain: the answer is due.
                signal_tree(self.pgid, set(), signal.SIGKILL)
                return
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

    def _working(self) -> bool:
        return self.status is None

    def _interrupt(self) -> None:
        """TERM the process tree (its group, and what left the group)."""
        self.term_pids = descendants(self.pid)
        signal_tree(self.pgid, self.term_pids, signal.SIGTERM)

    def _force(self) -> None:
        self.term_pids |= descendants(self.pid)
        signal_tree(self.pgid, self.term_pids, signal.SIGKILL)

    def _abandon(self) -> None:
        if self.status is None:
            signal_tree(self.pgid, descendants(self.pid), signal.SIGKILL)

    # -- result -------------------------------------------------------------------

    def _maybe_finish(self) -> None:
        if self.finished or self.status is None:
            return
        if any(reader.fd is not None for reader in self.readers.values()):
            return
        code = os.waitstatus_to_exitcode(self.status)
        sig = -code if code < 0 else None
        oom_killed = self.oom_struck()
        result = {
            "exit_code": 128 + sig if sig else code,
            "signal": sig,
            "timed_out": self.reason == "timeout",
            "cancelled": self.reason == "cancel",
            "oom_killed": oom_killed,
            "duration": time.monotonic() - self.started,
            "pid": self.pid,
        }
        if self.spawn_error is not None:
            result["spawn_error"] = self.spawn_error
        result.update(self.sink.summary())
        self.answer(result)

    def _release(self) -> None:
        if self.drain_timer is not None:
            self.drain_timer.cancel()
        if self.writer is not None:
            self.writer.close()
        self.watcher.close()
