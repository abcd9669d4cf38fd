"""Persistent Python interpreters ("kernels") in the sandbox, supervised by the guest.

Operations ``kernel.run`` and ``kernel.restart``: the calls on a kernel and
the kernels by name.  A kernel is a child process running ``kernel_main.py``
(``kernel_process.Kernel``); the guest writes it one request at a time over
a pipe and streams the code's stdout and stderr -- pipes too -- as the
call's output, within the call's flow-control credit.  A call ends when the
kernel has answered and its output pipes are drained.

Stopping: on timeout or cancel the kernel gets ``SIGINT`` (a
``KeyboardInterrupt`` in the code; state is kept); if it has not answered
after the grace period, it and everything it started are killed and a fresh
kernel takes its place, which the result says.  A kernel that dies on its
own -- the OOM killer, ``os._exit``, a crash in C -- is replaced the same way,
and a death by the OOM killer is reported as such.  Files written under the
outputs directory during a call are listed in its result.  Must not: run
the user's code in the guest's own process, or run two calls on one kernel.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from typing import Callable, Dict, List, Optional

from . import protocol
from .calls import RunningCall
from .errors import CallError
from .files import walk_tree
from .kernel_process import Kernel
from .logs import log
from .loop import Loop

Send = Callable[[bytes], None]

MAX_OUTPUT_FILES = 10000
MAX_OUTPUT_ENTRIES = 2 * MAX_OUTPUT_FILES
"""Entries (directories included) looked at per scan of the outputs folder, before and
after every cell: the scan runs in the guest's loop, and a cell can fill the folder with
empty directories faster than any scan reads them."""
MAX_LISTED_FILES = 500
"""Output files named in one result (the rest are counted), to keep the answer small."""
_STOPPED = {"timeout": "timeout", "cancel": "cancelled", "shutdown": "cancelled"}


def snapshot(root: Optional[str]) -> Dict[str, tuple]:
    """path -> (size, mtime) of the regular files under ``root`` (bounded)."""
    found: Dict[str, tuple] = {}
    if not root:
        return found
    for path, info in walk_tree(root, MAX_OUTPUT_ENTRIES):
        if stat.S_ISREG(info.st_mode):
            found[path] = (info.st_size, info.st_mtime_ns)
            if len(found) >= MAX_OUTPUT_FILES:
                break
    return found


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
            "oom_killed": self.oom_struck(),
            "signal": None,
            "duration": time.monotonic() - self.started,
        }
        payload = self.payload if self.header is not None else b""
        if self.header is None:
            # The interpreter is gone: killed after an interrupt failed, or died on its own.
            status = self.died if self.died is not None else 0
            code = os.waitstatus_to_exitcode(status) if self.died is not None else -9
            sig = -code if code < 0 else None
            # The counter moved: some process of this run met the memory limit, whoever
            # died of it; the run's status says "oom" only when that was the interpreter.
            oom = sig == signal.SIGKILL and not kernel.killed and result["oom_killed"]
            result.update(
                status="oom" if oom else _STOPPED.get(self.reason or "", "died"),
                return_code=128 + sig if sig else code,
                signal=sig,
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
