"""One interpreter process ("kernel"): starting it, its pipes, its answers, its death.

The interpreter runs ``kernel_main.py`` in a process of its own, started by
``spawn`` like any user code.  The guest writes it one request at a time on
a control pipe and reads its answers (``!II`` header and payload lengths,
JSON header, payload) from another; the code's stdout and stderr are two
more pipes, read into the running call's sink, or kept (up to
``STASH_LIMIT``) for the next call when a background thread writes between
calls.  An answer that does not parse means something else wrote into the
control pipe, and the interpreter is replaced.  Must not: run the user's
code in the guest's process, trust the size an answer announces beyond the
protocol's frame limits, or decide what a call's result says (``kernel``).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import time
from typing import Callable, Dict, List, Optional

from . import protocol
from .errors import CallError
from .logs import log
from .loop import Loop
from .pipes import RequestPipe
from .proctree import ExitWatcher, descendants, signal_tree
from .spawn import DEFAULT_PATH, devnull, enter_directory, leave_directory, spawn, which

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .kernel import KernelCall

PAIR = struct.Struct("!II")
LENGTH = struct.Struct("!I")
READ_SIZE = 64 * 1024
STASH_LIMIT = 64 * 1024
"""Output a background thread writes between calls, kept for the next call; the rest is counted."""
BOOTSTRAP = (
    "import runpy, sys; path = sys.argv.pop(1); sys.argv[0] = path; "
    "runpy.run_path(path, run_name='__sbx_kernel__')"
)
KERNEL_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_main.py")


class Kernel:
    """One interpreter process, its pipes, and the call it is running (if any)."""

    def __init__(self, loop: Loop, name: str, workdir: Optional[str]) -> None:
        self.loop = loop
        self.name = name
        self.call: Optional["KernelCall"] = None
        self.dead = False
        self.killed = False
        self.status: Optional[int] = None
        self.stash: List[tuple] = []
        self.stashed = 0
        self.dropped = 0
        self.on_death: Optional[Callable[["Kernel"], None]] = None
        ctl_r, ctl_w = os.pipe()
        rsp_r, rsp_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env = dict(os.environ)
        env.setdefault("MPLBACKEND", "Agg")
        env.pop("SBX_PATH_MAP", None)
        cwd = workdir if workdir and os.path.isdir(workdir) else None
        # The image's Python, with its packages: not the guest bundle's, which has none.
        python = which("python3", env.get("PATH", DEFAULT_PATH))
        if python is None:
            raise CallError(
                protocol.E_NOT_FOUND,
                "code execution needs Python in the sandbox image (no python3 on its PATH); "
                "use an image with python3, or run code with exec",
            )
        argv = [python, "-c", BOOTSTRAP, KERNEL_MAIN, str(ctl_r), str(rsp_w), str(os.getpid())]
        try:
            if cwd is not None:
                enter_directory(cwd)
            try:
                self.pid = spawn(
                    python, argv, env, devnull(), out_w, err_w, pass_fds=(ctl_r, rsp_w)
                )
            finally:
                if cwd is not None:
                    leave_directory()
        except OSError as exc:
            for fd in (ctl_w, rsp_r, out_r, err_r):
                os.close(fd)
            raise CallError(
                protocol.E_INTERNAL, "cannot start the Python interpreter: %s" % exc
            ) from None
        finally:
            for fd in (ctl_r, rsp_w, out_w, err_w):
                os.close(fd)
        self.ctl_fd: Optional[int] = ctl_w
        self.rsp_fd: Optional[int] = rsp_r
        self.out_fds: Dict[int, Optional[int]] = {protocol.STDOUT: out_r, protocol.STDERR: err_r}
        for fd in (self.rsp_fd, *self.out_fds.values()):
            os.set_blocking(fd, False)  # type: ignore[arg-type]
            os.set_inheritable(fd, False)  # type: ignore[arg-type]
        os.set_inheritable(ctl_w, False)
        self.requests = RequestPipe(loop, ctl_w)
        self.response = bytearray()
        self.paused = False
        for stream in self.out_fds:
            self._watch(stream)
        loop.add_reader(rsp_r, self._on_response)
        self.watcher = ExitWatcher(loop, self.pid, self._exited)
        self.started = time.monotonic()

    # -- output -----------------------------------------------------------------

    def _watch(self, stream: int) -> None:
        fd = self.out_fds.get(stream)
        if fd is not None:
            self.loop.add_reader(fd, lambda: self._readable(stream))

    def _readable(self, stream: int) -> None:
        self.read_some(stream)

    def read_some(self, stream: int) -> Optional[bool]:
        """One read of a pipe: True if data came, False on EOF, None if it would block."""
        fd = self.out_fds.get(stream)
        if fd is None:
            return False
        call = self.call
        size = call.sink.read_size() if call is not None else READ_SIZE
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(fd)
            os.close(fd)
            self.out_fds[stream] = None
            return False
        if call is not None:
            call.sink.emit(stream, data)
            if call.sink.blocked:
                self.pause()
        elif self.stashed < STASH_LIMIT:
            data = data[: STASH_LIMIT - self.stashed]
            self.stash.append((stream, data))
            self.stashed += len(data)
        else:
            self.dropped += len(data)
        return True

    def pause(self) -> None:
        self.paused = True
        for fd in self.out_fds.values():
            if fd is not None:
                self.loop.remove_reader(fd)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            for stream in self.out_fds:
                self._watch(stream)

    def take_stash(self) -> List[tuple]:
        stash, self.stash, self.stashed = self.stash, [], 0
        return stash

    # -- requests and answers -------------------------------------------------------

    def send_request(self, request: dict) -> None:
        """Start writing ``request`` (never blocking: ``RequestPipe``)."""
        body = json.dumps(request).encode("utf-8", "surrogatepass")
        if self.ctl_fd is None:
            raise CallError(protocol.E_INTERNAL, "the interpreter's control pipe is closed")
        try:
            self.requests.write(LENGTH.pack(len(body)) + body)
        except OSError as exc:
            raise CallError(
                protocol.E_INTERNAL, "the interpreter stopped taking requests: %s" % exc
            ) from None

    def _on_response(self) -> None:
        fd = self.rsp_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(fd)
            os.close(fd)
            self.rsp_fd = None
            return
        self.response += data
        while len(self.response) >= PAIR.size:
            head_len, payload_len = PAIR.unpack_from(self.response, 0)
            end = PAIR.size + head_len + payload_len
            if head_len > protocol.MAX_HEADER_BYTES or payload_len > protocol.MAX_PAYLOAD_BYTES:
                self._garbled("an answer of %d + %d bytes" % (head_len, payload_len))
                return
            if len(self.response) < end:
                return
            try:
                header = json.loads(bytes(self.response[PAIR.size : PAIR.size + head_len]))
            except ValueError:
                self._garbled("an answer that is not JSON")
                return
            payload = bytes(self.response[PAIR.size + head_len : end])
            del self.response[:end]
            if self.call is not None and isinstance(header, dict):
                self.call.answered(header, payload)

    def _garbled(self, what: str) -> None:
        """Something wrote into the control pipe (the code, by accident): start afresh."""
        log("interpreter sent %s; replacing it" % what, name=self.name)
        self.response.clear()
        self.kill()

    # -- death --------------------------------------------------------------------

    def _exited(self, status: int) -> None:
        self.status = status
        self.dead = True
        if self.call is not None:
            self.call.kernel_exited(status)
        else:
            self.close()
            if self.on_death is not None:
                self.on_death(self)

    def kill(self) -> None:
        """Kill the interpreter and everything it started."""
        if not self.dead:
            self.killed = True
            signal_tree(self.pid, descendants(self.pid), signal.SIGKILL)

    def drain_all(self) -> None:
        """After death: whatever is still in the pipes, without waiting for more."""
        for stream in list(self.out_fds):
            for _ in range(64):
                if not self.read_some(stream):
                    break

    def close(self) -> None:
        self.watcher.close()
        self.requests.stop()
        for fd in (self.ctl_fd, self.rsp_fd, *self.out_fds.values()):
            if fd is not None:
                self.loop.remove_reader(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.ctl_fd = self.rsp_fd = None
        self.out_fds = dict.fromkeys(self.out_fds)
