"""The guest's main loop: frames in on stdin, frames out on stdout.

The orchestrator attaches to the container's stdin/stdout once, and every
call travels over that one stream, so the sandbox needs no network and no
``docker exec``.  When stdin closes -- the orchestrator closed the session,
or died -- the guest kills everything it started and exits, and the
container (started with auto-remove) disappears: the dead man's switch.
Must not: write anything but frames to stdout, block, or import at start-up
what only some sessions use (the extensions load on their first request).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from . import protocol
from .errors import CallError
from .execcall import ExecCall
from .files import FileService
from .logs import log
from .loop import Loop
from .privileges import identity
from .shells import ShellRegistry

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Any, Callable, Dict, Optional

GUEST_VERSION = "1"

EXTENSIONS: Dict[str, str] = {}
"""Operation prefix -> module adding those operations (``desktop`` -> ``sbx_guest.desktop``).

An extension module has ``register(guest)``, which adds entries to
``guest.handlers`` (and may keep state on the guest).  It is imported on the
first request for one of its operations, so sandboxes that never use it do not
pay for importing it at start-up.
"""
EXTENSIONS["desktop"] = "sbx_guest.desktop"
EXTENSIONS["net"] = "sbx_guest.net"
EXTENSIONS["edit"] = "sbx_guest.textedit"
EXTENSIONS["kernel"] = "sbx_guest.kernel"
EXTENSIONS["transfer"] = "sbx_guest.transfer"


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "/"


class Guest:
    def __init__(self, loop: Loop, infd: int = 0, outfd: int = 1) -> None:
        self.loop = loop
        self.infd = infd
        self.outfd = outfd
        self.decoder = protocol.FrameDecoder()
        self.greeted = False
        self.calls: Dict[int, Any] = {}
        self.defaults: Dict[str, Any] = {
            "workdir": os.environ.get("SBX_WORKDIR") or _cwd(),
            "kill_grace": 2.0,
            "max_output": 16 << 20,
        }
        roots = os.environ.get("SBX_ALLOWED_ROOTS", "/workspace:/tmp:/home/sandbox").split(":")
        self.files = FileService([r for r in roots if r], 32 << 20)
        self.shells = ShellRegistry(loop)
        self.exit_code = 0
        self.isolate = False
        """Drop root and keep away from user code (off only for a test's local guest)."""
        self.egress: Dict[str, Any] = {"restricted": False}
        self.loaded_extensions: set = set()
        # Where the engine starts the guest before anyone is attached (a Swarm task), its
        # greeting would be lost: it answers the host's instead.  Where a closed stream
        # does not reach stdin (no stdin-once there), silence is the dead man's switch.
        self.greet_late = os.environ.pop("SBX_GUEST_GREET", "") == "late"
        self.silence_limit = float(os.environ.pop("SBX_GUEST_SILENCE", "0") or 0)
        self.last_input = time.monotonic()
        self.cleanups: list = []
        """Callables run at shutdown (extensions register theirs: stop an X server...)."""
        self.handlers: Dict[str, Callable[[int, dict, bytes], None]] = {
            protocol.OP_PING: self.op_ping,
            protocol.OP_INFO: self.op_info,
            protocol.OP_EXEC: self.op_exec,
            protocol.OP_SHELL_RUN: self.op_shell_run,
            protocol.OP_SHELL_RESTART: self.op_sync(
                lambda a, p: self.shells.restart(a, self.defaults)
            ),
            protocol.OP_SHELL_CLOSE: self.op_sync(lambda a, p: self.shells.close(a)),
            protocol.OP_FILE_READ: self.op_file_read,
            protocol.OP_FILE_WRITE: self.op_sync(self.files.write),
            protocol.OP_FILE_LIST: self.op_sync(lambda a, p: self.files.list(a)),
            protocol.OP_FILE_STAT: self.op_sync(lambda a, p: self.files.stat(a)),
            protocol.OP_FILE_MKDIR: self.op_sync(lambda a, p: self.files.mkdir(a)),
            protocol.OP_FILE_REMOVE: self.op_sync(lambda a, p: self.files.remove(a)),
        }

    # -- output -----------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Blocking write of a whole frame: the host always reads, so this never stalls long."""
        view = memoryview(frame)
        while view:
            try:
                n = os.write(self.outfd, view)
            except InterruptedError:
                continue
            except BrokenPipeError:
                self.shutdown("stdout closed")
                return
            view = view[n:]

    # -- input ------------------------------------------------------------------

    def start(self) -> None:
        os.set_blocking(self.infd, False)
        self.loop.add_reader(self.infd, self.on_input)
        if self.silence_limit > 0:
            self.loop.call_later(self.silence_limit, self.check_silence)
        if not self.greet_late:
            self.greet()

    def check_silence(self) -> None:
        quiet = time.monotonic() - self.last_input
        if quiet >= self.silence_limit:
            self.shutdown("the host went silent")
            return
        self.loop.call_later(self.silence_limit - quiet, self.check_silence)

    def greet(self) -> None:
        self.send(
            protocol.hello(
                list(protocol.ALL_OPS) + ["%s.*" % prefix for prefix in sorted(EXTENSIONS)],
                guest={
                    "version": GUEST_VERSION,
                    "python": sys.version.split()[0],
                    "uid": os.getuid(),
                    "gid": os.getgid(),
                    "pid": os.getpid(),
                    "hostname": os.uname().nodename,
                    "desktop": bool(os.environ.get("DISPLAY")) and os.path.exists("/usr/bin/Xvfb"),
                },
            )
        )

    def on_input(self) -> None:
        try:
            data = os.read(self.infd, 1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            log("stdin read failed", error=str(exc))
            data = b""
        if not data:
            self.shutdown("stdin closed")
            return
        self.last_input = time.monotonic()
        try:
            frames = self.decoder.feed(data)
        except protocol.FrameError as exc:
            log("bad frame from host; exiting", error=str(exc))
            self.exit_code = 2
            self.shutdown("protocol error")
            return
        for header, payload in frames:
            self.dispatch(header, payload)
            if not self.loop.running:
                return

    def dispatch(self, header: dict, payload: bytes) -> None:
        kind = header.get("k")
        if not self.greeted:
            try:
                protocol.check_hello(header)
            except protocol.FrameError as exc:
                log("incompatible host; exiting", error=str(exc))
                self.exit_code = 3
                self.shutdown("incompatible host")
                return
            self.greeted = True
            if self.greet_late:
                self.greet()
            self.configure(header.get("config") or {})
            return
        if kind == protocol.REQUEST:
            self.handle_request(header, payload)
        elif kind == protocol.CANCEL:
            call = self.calls.get(header.get("id"))  # type: ignore[arg-type]
            if call is not None:
                call.cancel()
        elif kind == protocol.WINDOW:
            call = self.calls.get(header.get("id"))  # type: ignore[arg-type]
            if call is not None:
                call.grant(int(header.get("n", 0)))
        elif kind == protocol.DATA:
            call = self.calls.get(header.get("id"))  # type: ignore[arg-type]
            if call is not None and hasattr(call, "feed"):
                call.feed(payload, bool(header.get("eof")))
        else:
            log("unknown frame kind ignored", kind=kind)

    def configure(self, config: dict) -> None:
        """The host's settings, from its hello; then out of reach of everything it will run.

        While still root: a networked sandbox's egress routes.  Then the guest's
        own uid, four capabilities, not dumpable; then the sandbox user's file
        identity.  A guest that cannot do all of it must not serve at all.
        """
        try:
            egress = config.get("egress")
            if self.isolate and egress is not None and os.geteuid() == 0:
                from .netguard import restrict_egress

                self.egress = restrict_egress(
                    [str(n) for n in egress.get("blocked") or []],
                    [str(n) for n in egress.get("allowed") or []],
                )
            if self.isolate:
                identity.drop()
            identity.refuse_root = bool(config.get("refuse_root"))
            if config.get("user"):
                identity.become(str(config["user"]))
        except (OSError, ValueError, KeyError, ImportError) as exc:
            log("cannot isolate the sandbox; refusing to serve", error=str(exc))
            self.exit_code = 4
            self.shutdown("cannot isolate: %s" % exc)
            return
        if config.get("roots"):
            self.files.set_roots([str(r) for r in config["roots"]])
        if config.get("max_file"):
            self.files.max_file = int(config["max_file"])
        for key in ("workdir", "kill_grace", "max_output"):
            if config.get(key) is not None:
                self.defaults[key] = config[key]
        if config.get("inner_limits"):
            from .inner_limits import limits

            limits.configure(config["inner_limits"], self.loop)

    def handle_request(self, header: dict, payload: bytes) -> None:
        call_id = header.get("id")
        if not isinstance(call_id, int):
            log("request without an integer id ignored", header=header)
            return
        if call_id in self.calls:
            self.send(
                protocol.error(
                    call_id, protocol.E_BAD_REQUEST, "call id %d is already in use" % call_id
                )
            )
            return
        op = header.get("op")
        handler = self.handlers.get(op)  # type: ignore[arg-type]
        if handler is None and isinstance(op, str):
            handler = self.load_extension(op)
        if handler is None:
            self.send(
                protocol.error(
                    call_id,
                    protocol.E_UNKNOWN_OP,
                    "unknown operation %r; this guest knows: %s"
                    % (op, ", ".join(protocol.ALL_OPS)),
                )
            )
            return
        try:
            args, payload = protocol.request_args(header, payload)
        except protocol.FrameError as exc:
            self.send(protocol.error(call_id, protocol.E_BAD_REQUEST, str(exc)))
            return
        if not isinstance(args, dict):
            self.send(
                protocol.error(call_id, protocol.E_BAD_REQUEST, "arguments must be an object")
            )
            return
        try:
            handler(call_id, args, payload)
        except CallError as exc:
            self.calls.pop(call_id, None)
            self.send(protocol.error(call_id, exc.code, exc.message, exc.details))
        except protocol.FrameError as exc:
            # The answer, not the request, was too large for a frame: say so.
            self.calls.pop(call_id, None)
            self.send(
                protocol.error(
                    call_id,
                    protocol.E_INTERNAL,
                    "the answer to %s is too large for one frame (%s); ask for less" % (op, exc),
                )
            )
        except (ValueError, TypeError) as exc:
            self.calls.pop(call_id, None)
            self.send(protocol.error(call_id, protocol.E_BAD_REQUEST, "bad arguments: %s" % exc))
        except Exception as exc:
            self.calls.pop(call_id, None)
            import traceback  # only on this rare path: startup time matters more

            log("operation failed", op=op, error=repr(exc), trace=traceback.format_exc())
            self.send(
                protocol.error(
                    call_id, protocol.E_INTERNAL, "internal guest error in %s: %r" % (op, exc)
                )
            )

    def load_extension(self, op: str) -> Optional[Callable[[int, dict, bytes], None]]:
        prefix = op.split(".", 1)[0]
        module_name = EXTENSIONS.get(prefix)
        if module_name is None or prefix in self.loaded_extensions:
            return None
        import importlib

        self.loaded_extensions.add(prefix)
        importlib.import_module(module_name).register(self)
        return self.handlers.get(op)

    def call_done(self, call_id: int) -> None:
        self.calls.pop(call_id, None)

    # -- operations ---------------------------------------------------------------

    def op_sync(self, fn: Callable[[dict, bytes], dict]) -> Callable[[int, dict, bytes], None]:
        def run(call_id: int, args: dict, payload: bytes) -> None:
            self.send(protocol.result(call_id, fn(args, payload)))

        return run

    def op_ping(self, call_id: int, args: dict, payload: bytes) -> None:
        self.send(protocol.result(call_id, {"time": time.time()}, payload))

    def op_info(self, call_id: int, args: dict, payload: bytes) -> None:
        self.send(
            protocol.result(
                call_id,
                {
                    "version": GUEST_VERSION,
                    "protocol": protocol.PROTOCOL_VERSION,
                    "python": sys.version.split()[0],
                    "uid": os.getuid(),
                    "gid": os.getgid(),
                    "user": identity.describe(),
                    "egress": self.egress,
                    "pid": os.getpid(),
                    "hostname": os.uname().nodename,
                    "kernel": os.uname().release,
                    "cpus": os.cpu_count(),
                    "roots": self.files.roots,
                    "workdir": self.defaults["workdir"],
                    "shells": sorted(self.shells.shells),
                    "calls": len(self.calls),
                },
            )
        )

    def op_exec(self, call_id: int, args: dict, payload: bytes) -> None:
        self.calls[call_id] = None
        self.calls[call_id] = ExecCall(
            self.loop, call_id, args, payload, self.send, self.call_done, self.defaults
        )

    def op_shell_run(self, call_id: int, args: dict, payload: bytes) -> None:
        self.calls[call_id] = None
        self.calls[call_id] = self.shells.run(
            call_id, args, self.send, self.call_done, self.defaults
        )

    def op_file_read(self, call_id: int, args: dict, payload: bytes) -> None:
        value, data = self.files.read(args)
        self.send(protocol.result(call_id, value, data))

    # -- stopping ---------------------------------------------------------------

    def shutdown(self, why: str) -> None:
        if not self.loop.running:
            return
        log("guest exiting", reason=why, calls=len(self.calls))
        for call in list(self.calls.values()):
            if call is not None:
                try:
                    call.kill_now()
                except Exception:
                    pass
        self.shells.kill_all()
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception:  # keep cleaning up
                pass
        self.loop.stop()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except OSError:
        pass


def main(argv: Optional[list] = None) -> int:
    # Our stdout is the protocol stream: nothing else may write to it.
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = sys.stderr
    os.umask(0o022)
    loop = Loop()
    guest = Guest(loop, infd=0, outfd=out_fd)
    # A signal handler runs between bytecodes but select() would resume waiting
    # afterwards; the wakeup pipe makes the loop notice the shutdown at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    loop.add_reader(wake_r, lambda: _drain(wake_r))
    signal.signal(signal.SIGTERM, lambda *_: guest.shutdown("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: guest.shutdown("SIGINT"))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # ``--no-isolation``: the guest run as a plain local process on a host (a test, or
    # the memory store's own guest; nothing a sandbox's user controls reaches its
    # command line).  It leaves the host's /tmp as it is.
    guest.isolate = "--no-isolation" not in (argv or ())
    if guest.isolate:
        for path, mode in (("/tmp/.X11-unix", 0o1777),):
            try:
                os.makedirs(path, exist_ok=True)
                os.chmod(path, mode)
            except OSError:
                pass
    # The guest itself works from / (every path it handles is absolute); commands
    # get their working directory when they are spawned.
    os.chdir("/")
    guest.start()
    loop.run()
    return guest.exit_code
