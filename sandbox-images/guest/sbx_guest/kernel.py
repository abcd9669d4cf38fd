"""Persistent Python interpreters ("kernels") in the sandbox, supervised by the guest.

Operations ``kernel.run`` and ``kernel.restart``.  A kernel is a child
process running ``kernel_main.py``; the guest writes it one request at a
time over a pipe and streams the code's stdout and stderr -- pipes too --
as the call's output, within the call's flow-control credit.  A call ends
when the kernel has answered and its output pipes are drained.

Stopping: on timeout or cancel the kernel gets ``SIGINT`` (a
``KeyboardInterrupt`` in the code; state is kept); if it has not answered
after the grace period, it and everything it started are killed and a fresh
kernel takes its place, which the result says.  A kernel that dies on its
own -- the OOM killer, ``os._exit``, a crash in C -- is replaced the same way,
and a death by the OOM killer is reported as such.  Files written under the
outputs directory during a call are listed in its result.  Nothing here runs
the user's code in the guest's own process.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
import sys
import time
from typing import Callable, Dict, List, Optional

from . import protocol
from .calls import RunningCall
from .errors import CallError
from .files import walk_tree
from .logs import log
from .loop import Loop
from .proctree import ExitWatcher, descendants, oom_killed_since_last_check, signal_tree
from .spawn import devnull, enter_directory, leave_directory, spawn

Send = Callable[[bytes], None]

PAIR = struct.Struct("!II")
LENGTH = struct.Struct("!I")
READ_SIZE = 64 * 1024
STASH_LIMIT = 64 * 1024
"""Output a background thread writes between calls, kept for the next call; the rest is counted."""
MAX_OUTPUT_FILES = 10000
MAX_LISTED_FILES = 500
"""Output files named in one result (the rest are counted), to keep the answer small."""
_STOPPED = {"timeout": "timeout", "cancel": "cancelled", "shutdown": "cancelled"}
BOOTSTRAP = (
    "import runpy, sys; path = sys.argv.pop(1); sys.argv[0] = path; "
    "runpy.run_path(path, run_name='__sbx_kernel__')"
)
KERNEL_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_main.py")


def snapshot(root: Optional[str]) -> Dict[str, tuple]:
    """path -> (size, mtime) of the regular files under ``root`` (bounded)."""
    found: Dict[str, tuple] = {}
    if not root:
        return found
    for path, info in walk_tree(root):
        if stat.S_ISREG(info.st_mode):
            found[path] = (info.st_size, info.st_mtime_ns)
            if len(found) >= MAX_OUTPUT_FILES:
                break
    return found


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
        python = sys.executable or "/usr/bin/python3"
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
        body = json.dumps(request).encode("utf-8", "surrogatepass")
        data = LENGTH.pack(len(body)) + body
        fd = self.ctl_fd
        if fd is None:
            raise CallError(protocol.E_INTERNAL, "the interpreter's control pipe is closed")
        # The kernel is idle and reading, so a blocking write of a long request is brief.
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
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
        for fd in (self.ctl_fd, self.rsp_fd, *self.out_fds.values()):
            if fd is not None:
                self.loop.remove_reader(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.ctl_fd = self.rsp_fd = None
        self.out_fds = dict.fromkeys(self.out_fds)


class KernelCall(RunningCall):
    """One ``kernel.run``: the request, its streamed output, interrupts, and the answer."""

    def __init__(
        self,
        registry: "KernelRegistry",
        kernel: Kernel,
        call_id: int,
        args: dict,
        code: str,
        send: Send,
        done: Callable[[int], None],
        defaults: dict,
    ) -> None:
        super().__init__(kernel.loop, call_id, send, done)
        self.registry = registry
        self.kernel = kernel
        sink = self._apply_limits(args, defaults)
        self.header: Optional[dict] = None
        self.payload = b""
        self.died: Optional[int] = None
        self.outputs = registry.outputs_dir(args.get("outputs"))
        self.before = snapshot(self.outputs)
        kernel.send_request(
            {
                "code": code,
                "max_figures": int(args.get("max_figures", 20)),
                "max_figure_bytes": min(
                    int(args.get("max_figure_bytes", 32 << 20)), protocol.MAX_PAYLOAD_BYTES // 2
                ),
                "repr_limit": int(args.get("repr_limit", 20000)),
            }
        )
        kernel.call = self
        for stream, data in kernel.take_stash():
            sink.emit(stream, data)
        if kernel.dropped:
            note = "[sbx: %d bytes written between calls were dropped]\n" % kernel.dropped
            sink.emit(protocol.STDERR, note.encode())
            kernel.dropped = 0
        self._arm_timeout(args)

    # -- flow -------------------------------------------------------------------

    def _resume(self) -> None:
        self.kernel.resume()
        if self.header is not None:
            self._try_finish()

    def answered(self, header: dict, payload: bytes) -> None:
        self.header = header
        self.payload = payload
        self._try_finish()

    def _try_finish(self) -> None:
        """Finish once the output written before the answer has all been forwarded."""
        if self.finished:
            return
        for stream in list(self.kernel.out_fds):
            for _ in range(256):  # bounded: a background writer must not keep the call open
                if self.sink.blocked:
                    return  # wait for the host to take more output
                if not self.kernel.read_some(stream):
                    break
        self._finish()

    # -- stopping ---------------------------------------------------------------

    def _working(self) -> bool:
        return self.header is None

    def _interrupt(self) -> None:
        """A ``KeyboardInterrupt`` in the code; the interpreter and its state stay."""
        try:
            os.kill(self.kernel.pid, signal.SIGINT)
        except OSError:
            pass

    def _force(self) -> None:
        """The interrupt did not end the code: replace the interpreter."""
        self.kernel.kill()

    def _abandon(self) -> None:
        self.kernel.kill()

    def kernel_exited(self, status: int) -> None:
        self.died = status
        self.kernel.drain_all()
        self._finish()

    # -- result -------------------------------------------------------------------

    def _finish(self) -> None:
        if not self._end():
            return
        kernel = self.kernel
        header = self.header or {}
        figures: List[int] = list(header.get("figures") or [])
        # Stopped by us: interrupted (state kept) or replaced (state lost).
        stopped = self.header is None or header.get("status") == "interrupted"
        result = {
            "status": header.get("status", "died"),
            "return_code": header.get("return_code", 1),
            "result": header.get("result"),
            "error": header.get("error"),
            "figures": figures,
            "figures_dropped": header.get("figures_dropped", 0),
            "timed_out": self.reason == "timeout" and stopped,
            "cancelled": self.reason in ("cancel", "shutdown") and stopped,
            "interrupted": self.reason is not None and header.get("status") == "interrupted",
            "restarted": False,
            "oom_killed": False,
            "signal": None,
            "duration": time.monotonic() - self.started,
        }
        payload = self.payload if self.header is not None else b""
        if self.header is None:
            # The interpreter is gone: killed after an interrupt failed, or died on its own.
            status = self.died if self.died is not None else 0
            code = os.waitstatus_to_exitcode(status) if self.died is not None else -9
            sig = -code if code < 0 else None
            oom = sig == signal.SIGKILL and not kernel.killed and oom_killed_since_last_check()
            result.update(
                status="oom" if oom else _STOPPED.get(self.reason or "", "died"),
                return_code=128 + sig if sig else code,
                signal=sig,
                oom_killed=oom,
                restarted=True,
                figures=[],
            )
            self.registry.replace(kernel)
        result.update(self.sink.summary())
        files = self._new_files()
        result["files"] = files[:MAX_LISTED_FILES]
        result["files_more"] = max(0, len(files) - MAX_LISTED_FILES)
        try:
            frame = protocol.result(self.call_id, result, payload)
        except (protocol.FrameError, ValueError, TypeError) as exc:
            frame = protocol.error(
                self.call_id,
                protocol.E_INTERNAL,
                "the interpreter's answer could not be sent (%s); return less from one call" % exc,
            )
        self._reply(frame)

    def _release(self) -> None:
        self.kernel.call = None
        self.kernel.resume()

    def _new_files(self) -> List[dict]:
        after = snapshot(self.outputs)
        return [
            {"path": path, "size": info[0]}
            for path, info in sorted(after.items())
            if self.before.get(path) != info
        ]


class KernelRegistry:
    """The guest's kernels by name, started on first use."""

    def __init__(self, guest: object) -> None:
        self.guest = guest
        self.loop: Loop = guest.loop  # type: ignore[attr-defined]
        self.kernels: Dict[str, Kernel] = {}

    def outputs_dir(self, path: object) -> Optional[str]:
        """The outputs directory, created if needed, if it lies under the allowed roots."""
        if not isinstance(path, str) or not path:
            return None
        try:
            real = self.guest.files.resolve(path)  # type: ignore[attr-defined]
            os.makedirs(real, exist_ok=True)
        except (CallError, OSError):
            return None
        return real

    def get(self, name: str) -> Kernel:
        kernel = self.kernels.get(name)
        if kernel is None or kernel.dead:
            if kernel is not None:
                kernel.close()
            kernel = self._start(name)
        return kernel

    def _start(self, name: str) -> Kernel:
        kernel = Kernel(self.loop, name, self.guest.defaults.get("workdir"))  # type: ignore[attr-defined]
        kernel.on_death = self._died_idle
        self.kernels[name] = kernel
        return kernel

    def _died_idle(self, kernel: Kernel) -> None:
        """A kernel died between calls (a background thread ran out of memory...): forget it."""
        log("interpreter exited between calls", name=kernel.name, status=kernel.status)
        if self.kernels.get(kernel.name) is kernel:
            del self.kernels[kernel.name]

    def replace(self, kernel: Kernel) -> None:
        """After a death during a call: clean up and start the next interpreter at once."""
        kernel.close()
        if self.kernels.get(kernel.name) is kernel:
            del self.kernels[kernel.name]
            try:
                self._start(kernel.name)
            except (CallError, OSError) as exc:
                # The next call starts one (or reports why it cannot).
                log("could not restart the interpreter", name=kernel.name, error=str(exc))

    def run(
        self, call_id: int, args: dict, payload: bytes, send: Send, done: Callable[[int], None]
    ) -> KernelCall:
        name = str(args.get("name") or "default")
        kernel = self.get(name)
        if kernel.call is not None:
            raise CallError(
                protocol.E_BUSY,
                "interpreter %r is still running a call; wait for it, cancel it, or use "
                "another interpreter name" % name,
            )
        code = payload.decode("utf-8", "surrogateescape")
        return KernelCall(
            self,
            kernel,
            call_id,
            args,
            code,
            send,
            done,
            self.guest.defaults,  # type: ignore[attr-defined]
        )

    def restart(self, args: dict) -> dict:
        name = str(args.get("name") or "default")
        old = self.kernels.pop(name, None)
        if old is not None:
            if old.call is not None:
                old.call.reason = old.call.reason or "cancel"
                old.kill()
                # The running call finishes when the death is noticed; keep its kernel out of
                # the registry so that finishing does not start a second replacement.
            else:
                old.kill()
                old.close()
        self._start(name)
        return {"name": name, "restarted": old is not None}

    def kill_all(self) -> None:
        for kernel in list(self.kernels.values()):
            kernel.kill()
            kernel.close()
        self.kernels.clear()


def register(guest: object) -> None:
    registry = KernelRegistry(guest)

    def run(call_id: int, args: dict, payload: bytes) -> None:
        calls = guest.calls  # type: ignore[attr-defined]
        calls[call_id] = None
        calls[call_id] = registry.run(call_id, args, payload, guest.send, guest.call_done)  # type: ignore[attr-defined]

    def restart(call_id: int, args: dict, payload: bytes) -> None:
        guest.send(protocol.result(call_id, registry.restart(args)))  # type: ignore[attr-defined]

    guest.handlers[protocol.OP_KERNEL_RUN] = run  # type: ignore[attr-defined]
    guest.handlers[protocol.OP_KERNEL_RESTART] = restart  # type: ignore[attr-defined]
    guest.cleanups.append(registry.kill_all)  # type: ignore[attr-defined]
