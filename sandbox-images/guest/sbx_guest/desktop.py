"""The desktop extension: an X server, a window manager and a VNC server, supervised.

Operations (prefix ``desktop``): ``start`` brings up Xvfb (its screen in a
framebuffer file), waits until the server answers, then a window manager;
``input`` runs a list of keyboard and mouse steps, waits until the screen
settles (stops changing, capped) and returns a screenshot; ``screenshot``,
``cursor``, ``status``, ``stop``; ``vnc`` starts x11vnc on loopback for the
live view and ``novnc`` hands out the noVNC client files of this image.

Everything runs on the guest's event loop: waits are timers and child exits
are watched, never slept on.  A dead X server is reported by ``status`` and
by every later operation, and ``start`` with ``restart`` brings it back.
Must not: run without Xvfb's framebuffer (screenshots come from it), or
leave a key or button held when an action is cancelled.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from . import protocol
from .calls import RunningCall
from .errors import CallError
from .loop import Timer
from .proctree import ExitWatcher, signal_tree
from .spawn import devnull
from .xinput import Event, XInput, xlib
from .xscreen import Framebuffer, pillow, render

RUNTIME_DIR = "/tmp/sbx-desktop"
NOVNC_DIR = "/usr/share/novnc"
POLL = 0.012
"""Seconds between framebuffer comparisons while waiting for the screen to settle."""

_FLUXBOX_INIT = """\
session.configVersion: 13
session.menuFile: /etc/X11/fluxbox/fluxbox-menu
session.keyFile: ~/.fluxbox/keys
session.appsFile: ~/.fluxbox/apps
session.styleFile: /usr/share/fluxbox/styles/Squared_for_Debian
session.styleOverlay: ~/.fluxbox/overlay
session.screen0.rootCommand:
session.screen0.workspaces: 1
session.screen0.workspaceNames: Desktop
session.screen0.focusModel: ClickFocus
session.screen0.clickRaises: true
session.screen0.toolbar.visible: true
session.screen0.toolbar.widthPercent: 100
session.screen0.toolbar.tools: iconbar, clock
session.screen0.strftimeFormat: %a %d %b %H:%M
session.screen0.slit.autoHide: true
"""


def _tail(path: str, size: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _describe_status(status: int) -> str:
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
        actions: List[Tuple[Any, ...]] = [
            (os.POSIX_SPAWN_DUP2, devnull(), 0),
            (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        if extra_fd is not None:
            actions.append((os.POSIX_SPAWN_DUP2, extra_fd, 3))
        try:
            self.pid = os.posix_spawn(program, argv, env, file_actions=actions, setsid=True)
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
        return _tail(self.log_path)


class PendingCall(RunningCall):
    """A desktop call that answers later; its steps run on timers, guarded by ``_guarded``."""

    def __init__(self, service: "DesktopService", call_id: int) -> None:
        guest = service.guest
        super().__init__(guest.loop, call_id, guest.send, guest.call_done)
        self.service = service
        self.guest = guest
        self.guest.calls[call_id] = self

    def later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return super().later(delay, self._guarded(callback))

    def _guarded(self, callback: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if self.finished:
                return
            try:
                callback()
            except CallError as exc:
                self.fail(exc.code, exc.message)
            except Exception as exc:
                self.fail(protocol.E_DESKTOP, self.service.explain(exc))

        return run

    def _release(self) -> None:
        self.service.pending.discard(self)

    def fail(self, code: str, message: str, details: Optional[dict] = None) -> None:
        if not self.finished:
            self.cleanup()
            super().fail(code, message, details)

    def cleanup(self) -> None:
        """Undo what a half-done call left behind (overridden where there is something)."""

    def cancel(self) -> None:
        self.fail(protocol.E_DESKTOP, "the desktop call was cancelled")

    def _abandon(self) -> None:
        if not self.finished:
            self.cleanup()
            self._end()
            self.guest.call_done(self.call_id)


class StartCall(PendingCall):
    """Bring up Xvfb, wait until it answers, then the window manager."""

    def __init__(self, service: "DesktopService", call_id: int, args: dict) -> None:
        super().__init__(service, call_id)
        self.args = args
        self.timeout = float(args.get("timeout", 30.0))
        self.read_fd: Optional[int] = None
        self.displayfd_text = b""
        self.x_seconds = 0.0
        self.wm_deadline = 0.0
        service.state = "starting"
        try:
            self._launch_server()
        except BaseException:
            self.finished = True
            self._stop_reading()
            service.stop_children(wait=False)
            service.state = "stopped"
            raise
        service.pending.add(self)
        self.later(self.timeout, self._timed_out)
        # The libraries load while the X server starts (it is a process of its own).
        try:
            pillow()
            xlib()
        except CallError as exc:
            self.fail(exc.code, exc.message)

    def _launch_server(self) -> None:
        service = self.service
        args = self.args
        width, height, depth = int(args["width"]), int(args["height"]), int(args["depth"])
        number = int(args.get("display", 1))
        os.makedirs(RUNTIME_DIR, mode=0o700, exist_ok=True)
        fbdir = os.path.join(RUNTIME_DIR, "fb%d" % number)
        os.makedirs(fbdir, mode=0o700, exist_ok=True)
        try:
            os.unlink(os.path.join(fbdir, "Xvfb_screen0"))
        except OSError:
            pass
        service.geometry = (width, height, depth)
        service.number = number
        service.fbdir = fbdir
        read_fd, write_fd = os.pipe()
        if write_fd == 3:  # dup2(3, 3) would keep close-on-exec: Xvfb must get a real fd 3
            moved = os.dup(write_fd)
            os.close(write_fd)
            write_fd = moved
        argv = [
            "Xvfb",
            ":%d" % number,
            "-displayfd",
            "3",
            "-screen",
            "0",
            "%dx%dx%d" % (width, height, depth),
            "-fbdir",
            fbdir,
            "-nolisten",
            "tcp",
            "-noreset",
            "-dpi",
            "96",
        ]
        try:
            service.xvfb = Child(
                self.guest,
                "the X server",
                argv,
                dict(os.environ),
                os.path.join(RUNTIME_DIR, "xvfb%d.log" % number),
                service.on_child_exit,
                extra_fd=write_fd,
            )
        finally:
            os.close(write_fd)
        self.read_fd = read_fd
        os.set_blocking(read_fd, False)
        self.guest.loop.add_reader(read_fd, self._guarded(self._display_ready))

    def _stop_reading(self) -> None:
        if self.read_fd is not None:
            self.guest.loop.remove_reader(self.read_fd)
            os.close(self.read_fd)
            self.read_fd = None

    def _display_ready(self) -> None:
        assert self.read_fd is not None
        try:
            data = os.read(self.read_fd, 64)
        except BlockingIOError:
            return
        self.displayfd_text += data
        if data and b"\n" not in self.displayfd_text:
            return  # Xvfb writes the number and the newline separately: keep reading
        self._stop_reading()
        if not self.displayfd_text.strip():
            return  # the server died before it was ready; its exit handler reports why
        self.x_seconds = time.monotonic() - self.started
        service = self.service
        name = ":%d" % service.number
        os.environ["DISPLAY"] = name
        wm = self.args.get("wm") or "none"
        if wm != "none":
            # The window manager starts while we connect: it is a process of its own.
            service.start_wm(str(wm))
            self.wm_deadline = time.monotonic() + float(self.args.get("wm_timeout", 10.0))
        service.xinput = XInput(name)
        service.fb = Framebuffer(os.path.join(service.fbdir, "Xvfb_screen0"))
        background = self.args.get("background")
        if background:
            service.xinput.set_background(str(background))
        if wm == "none":
            self._ready()
            return
        self._wait_for_wm()

    def _wait_for_wm(self) -> None:
        service = self.service
        if service.xinput is not None and service.xinput.wm_running():
            self._ready()
        elif service.wm is None or not service.wm.alive or time.monotonic() > self.wm_deadline:
            self._ready()  # a desktop without its window manager is still a desktop
        else:
            self.later(0.02, self._wait_for_wm)

    def _ready(self) -> None:
        service = self.service
        service.state = "running"
        service.death = None
        value = service.describe()
        value["seconds"] = round(time.monotonic() - self.started, 3)
        value["x_seconds"] = round(self.x_seconds, 3)
        self.answer(value)

    def _timed_out(self) -> None:
        tail = self.service.xvfb.log_tail() if self.service.xvfb is not None else ""
        self.fail(
            protocol.E_DESKTOP,
            "the X server did not come up within %g s%s"
            % (self.timeout, (": " + tail) if tail else ""),
        )

    def server_died(self, status: int, log: str) -> None:
        self.fail(
            protocol.E_DESKTOP,
            "the X server %s while starting%s"
            % (_describe_status(status), (": " + log) if log else ""),
        )

    def cleanup(self) -> None:
        self._stop_reading()
        self.service.stop_children(wait=False)

    def cancel(self) -> None:
        self.fail(protocol.E_DESKTOP, "starting the desktop was cancelled")


class InputCall(PendingCall):
    """Steps of keyboard and mouse input, then a wait for the screen to settle, then a capture."""

    def __init__(self, service: "DesktopService", call_id: int, args: dict) -> None:
        super().__init__(service, call_id)
        service.require_running()
        self.xi = service.xinput
        self.fb = service.fb
        assert self.xi is not None
        assert self.fb is not None
        self.args = args
        self.pressed_keys: Set[int] = set()
        self.pressed_buttons: Set[int] = set()
        self.events: Iterator[Event] = self._expand(list(args.get("steps") or []))
        settle = args.get("settle")
        self.quiet = float(settle.get("quiet_ms", 80)) / 1000 if settle else 0.0
        self.settle_timeout = float(settle.get("timeout_ms", 2000)) / 1000 if settle else 0.0
        self.settle = bool(settle)
        self.prev = b""
        self.quiet_since = 0.0
        self.settle_started = 0.0
        self.changed = False
        service.pending.add(self)
        self.later(0, self._run)

    def _expand(self, steps: List[dict]) -> Iterator[Event]:
        xi = self.xi
        assert xi is not None
        for step in steps:
            if not isinstance(step, dict):
                raise CallError(protocol.E_BAD_REQUEST, "each input step must be an object")
            op = step.get("op")
            if op == "move":
                x, y = int(step["x"]), int(step["y"])
                self.service.check_point(x, y)
                yield ("motion", x, y)
            elif op == "button":
                yield ("button", int(step["button"]), bool(step["down"]))
            elif op == "key":
                yield from xi.key_events(str(step["key"]), bool(step["down"]))
            elif op == "type":
                yield from xi.type_events(str(step["text"]), float(step.get("delay_ms", 0)) / 1000)
            elif op == "sleep":
                yield ("sleep", max(0.0, float(step["ms"]) / 1000))
            elif op == "sync":
                yield ("sync",)
            else:
                raise CallError(protocol.E_BAD_REQUEST, "unknown input step %r" % (op,))

    def _run(self) -> None:
        xi = self.xi
        assert xi is not None
        for event in self.events:
            if event[0] == "sleep":
                xi.flush()
                self.later(event[1], self._run)
                return
            xi.apply(event)
            if event[0] == "key":
                (self.pressed_keys.add if event[2] else self.pressed_keys.discard)(event[1])
            elif event[0] == "button":
                (self.pressed_buttons.add if event[2] else self.pressed_buttons.discard)(event[1])
        xi.sync()
        if self.settle:
            self.settle_started = self.quiet_since = time.monotonic()
            self.prev = self.fb.snapshot() if self.fb is not None else b""
            self.later(POLL, self._poll)
        else:
            self._finish(settled=None)

    def _poll(self) -> None:
        assert self.fb is not None
        now = time.monotonic()
        current = self.fb.snapshot()
        if current != self.prev:
            self.prev = current
            self.quiet_since = now
            self.changed = True
        elif now - self.quiet_since >= self.quiet:
            self._finish(settled=True)
            return
        if now - self.settle_started >= self.settle_timeout:
            self._finish(settled=False)
            return
        self.later(POLL, self._poll)

    def _finish(self, settled: Optional[bool]) -> None:
        service = self.service
        assert self.xi is not None
        assert self.fb is not None
        value: Dict[str, Any] = {"cursor": list(self.xi.pointer())}
        if settled is not None:
            value["settled"] = settled
            value["changed"] = self.changed
            value["settle_ms"] = round((time.monotonic() - self.settle_started) * 1000, 1)
        payload = b""
        shot = self.args.get("screenshot")
        if shot:
            pixels = self.prev if settled else None
            payload, width, height = service.capture(shot if isinstance(shot, dict) else {}, pixels)
            value["width"], value["height"] = width, height
        value["ms"] = round((time.monotonic() - self.started) * 1000, 1)
        self.answer(value, payload)

    def cleanup(self) -> None:
        if self.xi is not None and (self.pressed_keys or self.pressed_buttons):
            try:
                self.xi.release(self.pressed_keys, self.pressed_buttons)
            except Exception:
                pass

    def cancel(self) -> None:
        self.fail(protocol.E_DESKTOP, "the desktop action was cancelled")


class VncCall(PendingCall):
    """Start x11vnc for the live view (view-only or interactive) and wait until it listens."""

    def __init__(self, service: "DesktopService", call_id: int, args: dict) -> None:
        super().__init__(service, call_id)
        service.require_running()
        self.view_only = bool(args.get("view_only", True))
        base = int(args.get("port", 5900))
        self.port = base if self.view_only else base + 1
        self.deadline = time.monotonic() + float(args.get("timeout", 10.0))
        child = service.vnc.get(self.port)
        if child is None or not child.alive:
            argv = [
                "x11vnc",
                "-display",
                ":%d" % service.number,
                "-rfbport",
                str(self.port),
                "-localhost",
                "-nopw",
                "-shared",
                "-forever",
                "-noxdamage",
                "-noipv6",
                "-quiet",
            ]
            if self.view_only:
                argv.append("-viewonly")
            service.vnc[self.port] = Child(
                self.guest,
                "the VNC server",
                argv,
                dict(os.environ),
                os.path.join(RUNTIME_DIR, "x11vnc-%d.log" % self.port),
                service.on_child_exit,
            )
        service.pending.add(self)
        self.later(0, self._probe)

    def _probe(self) -> None:
        child = self.service.vnc.get(self.port)
        if child is None or not child.alive:
            self.fail(
                protocol.E_DESKTOP,
                "the VNC server exited: %s" % (child.log_tail() if child else "not started"),
            )
            return
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.05)
        try:
            listening = probe.connect_ex(("127.0.0.1", self.port)) == 0
        finally:
            probe.close()
        if listening:
            self.answer({"port": self.port, "view_only": self.view_only, "pid": child.pid})
        elif time.monotonic() > self.deadline:
            self.fail(
                protocol.E_DESKTOP,
                "the VNC server did not listen on port %d in time: %s"
                % (self.port, child.log_tail()),
            )
        else:
            self.later(0.05, self._probe)


class StopCall(PendingCall):
    """Stop everything and answer once the X server is gone (so its display can be reused)."""

    def __init__(
        self, service: "DesktopService", call_id: int, then: Optional[Callable[[], None]] = None
    ) -> None:
        super().__init__(service, call_id)
        self.then = then
        self.deadline = time.monotonic() + 5.0
        service.stop_children(wait=True)
        self.later(0, self._check)

    def _check(self) -> None:
        service = self.service
        xvfb = service.xvfb
        if xvfb is not None and xvfb.alive and time.monotonic() < self.deadline:
            if time.monotonic() > self.deadline - 3.0:
                xvfb.signal(signal.SIGKILL)
            self.later(0.02, self._check)
            return
        service.forget_server()
        if self.then is not None:
            # The call goes on as the start that follows, under the same id.
            self._end()
            self.guest.call_done(self.call_id)
            self.then()
        else:
            self.answer({"state": service.state})


class DesktopService:
    """The one desktop of this sandbox and the processes that make it."""

    def __init__(self, guest: Any) -> None:
        self.guest = guest
        self.state = "stopped"  # stopped | starting | running | dead
        self.death: Optional[str] = None
        self.geometry = (0, 0, 0)
        self.number = 1
        self.fbdir = ""
        self.xvfb: Optional[Child] = None
        self.wm: Optional[Child] = None
        self.wm_name = "none"
        self.vnc: Dict[int, Child] = {}
        self.xinput: Optional[XInput] = None
        self.fb: Optional[Framebuffer] = None
        self.pending: Set[PendingCall] = set()

    # -- children -------------------------------------------------------------

    def start_wm(self, name: str) -> None:
        if name != "fluxbox":
            raise CallError(protocol.E_BAD_REQUEST, "unknown window manager %r" % name)
        home = os.environ.get("HOME") or RUNTIME_DIR
        env = dict(os.environ)
        config = os.path.join(home, ".fluxbox")
        try:
            self._write_fluxbox_config(config)
        except OSError:
            config = os.path.join(RUNTIME_DIR, "home", ".fluxbox")
            self._write_fluxbox_config(config)
            env["HOME"] = os.path.dirname(config)
        self.wm_name = name
        self.wm = Child(
            self.guest,
            "the window manager",
            ["fluxbox", "-rc", os.path.join(config, "init")],
            env,
            os.path.join(RUNTIME_DIR, "wm.log"),
            self.on_child_exit,
        )

    @staticmethod
    def _write_fluxbox_config(folder: str) -> None:
        """Our fluxbox settings, unless the user made their own (then theirs are kept)."""
        if os.path.exists(os.path.join(folder, "init")):
            return
        os.makedirs(folder, exist_ok=True)
        files = {
            "init": _FLUXBOX_INIT,
            "apps": "",
            "overlay": "background: none\n",
        }
        try:
            with open("/etc/X11/fluxbox/keys") as f:
                files["keys"] = f.read()
        except OSError:
            files["keys"] = ""
        for name, text in files.items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)

    def on_child_exit(self, child: Child, status: int) -> None:
        from .logs import log

        if child is self.xvfb:
            log("X server exited", status=_describe_status(status), display=self.number)
            tail = child.log_tail()
            for call in list(self.pending):
                if isinstance(call, StartCall):
                    call.server_died(status, tail)
            if self.state in ("running", "starting"):
                self.state = "dead"
                self.death = "the X server %s" % _describe_status(status)
                for call in list(self.pending):
                    call.fail(protocol.E_DESKTOP, self.death + "; " + self.restart_hint())
                self._drop_connections()
                for other in [self.wm, *self.vnc.values()]:
                    if other is not None:
                        other.signal(signal.SIGKILL)
        elif child is self.wm:
            log("window manager exited", status=_describe_status(status))
        else:
            log("VNC server exited", status=_describe_status(status))

    @staticmethod
    def restart_hint() -> str:
        return "restart the desktop (Session.desktop.restart(), or desktop.start with restart)"

    def stop_children(self, wait: bool) -> None:
        """TERM the VNC servers and the window manager, then the X server; KILL if not waiting."""
        for child in [*self.vnc.values(), self.wm]:
            if child is not None:
                child.signal(signal.SIGKILL if not wait else signal.SIGTERM)
        if self.xvfb is not None:
            self.xvfb.signal(signal.SIGTERM if wait else signal.SIGKILL)
        self._drop_connections()
        if not wait:
            self.forget_server()

    def _drop_connections(self) -> None:
        if self.xinput is not None:
            self.xinput.close()
            self.xinput = None
        if self.fb is not None:
            self.fb.close()
            self.fb = None

    def forget_server(self) -> None:
        self._drop_connections()
        self.xvfb = None
        self.wm = None
        self.vnc = {}
        if self.state != "dead":
            self.state = "stopped"

    def shutdown(self) -> None:
        """Guest exit: everything goes, at once."""
        for call in list(self.pending):
            call.kill_now()
        for child in [*self.vnc.values(), self.wm, self.xvfb]:
            if child is not None:
                child.signal(signal.SIGKILL)
        self._drop_connections()

    # -- queries ------------------------------------------------------------------

    def require_running(self) -> None:
        if self.state == "running" and self.xinput is not None and self.fb is not None:
            return
        if self.state == "dead":
            raise CallError(protocol.E_DESKTOP, "%s; %s" % (self.death, self.restart_hint()))
        if self.state == "starting":
            raise CallError(protocol.E_BUSY, "the desktop is still starting; try again")
        raise CallError(
            protocol.E_DESKTOP,
            "no desktop is running in this sandbox; start one with desktop.start "
            "(sessions of the desktop image start it themselves)",
        )

    def check_point(self, x: int, y: int) -> None:
        width, height, _ = self.geometry
        if not (0 <= x < width and 0 <= y < height):
            raise CallError(
                protocol.E_BAD_REQUEST,
                "point (%d, %d) is off the %dx%d screen" % (x, y, width, height),
            )

    def describe(self) -> Dict[str, Any]:
        width, height, depth = self.geometry
        value: Dict[str, Any] = {
            "state": self.state,
            "display": ":%d" % self.number,
            "width": width,
            "height": height,
            "depth": depth,
            "wm": self.wm_name,
            "wm_running": bool(self.wm is not None and self.wm.alive),
            "vnc_ports": sorted(port for port, child in self.vnc.items() if child.alive),
        }
        if self.xvfb is not None:
            value["pid"] = self.xvfb.pid
        if self.death:
            value["death"] = self.death
        return value

    def capture(self, spec: dict, pixels: Optional[bytes]) -> Tuple[bytes, int, int]:
        assert self.fb is not None
        region = spec.get("region")
        size = spec.get("size")
        return render(
            self.fb,
            pixels,
            region=tuple(int(v) for v in region) if region else None,  # type: ignore[arg-type]
            size=(int(size[0]), int(size[1])) if size else None,
            upscale=int(spec.get("upscale", 1)),
            resample=str(spec.get("resample", "bilinear")),
        )

    def explain(self, exc: BaseException) -> str:
        """A failure while talking to the X server, said plainly."""
        if self.state == "dead" and self.death:
            return "%s; %s" % (self.death, self.restart_hint())
        return "the X server connection failed (%s: %s)" % (type(exc).__name__, exc)

    # -- operations -----------------------------------------------------------------

    def op_start(self, call_id: int, args: dict) -> None:
        for key in ("width", "height", "depth"):
            if not isinstance(args.get(key), int):
                raise CallError(protocol.E_BAD_REQUEST, "desktop.start needs integer %s" % key)
        if shutil.which("Xvfb") is None:
            raise CallError(
                protocol.E_DESKTOP,
                "this sandbox image has no X server (Xvfb); use the desktop image "
                "(`--image desktop`) for computer use",
            )
        wanted = (int(args["width"]), int(args["height"]), int(args["depth"]))
        if self.state == "starting":
            raise CallError(protocol.E_BUSY, "the desktop is already starting")
        if self.state == "running" and not args.get("restart"):
            if wanted != self.geometry:
                raise CallError(
                    protocol.E_DESKTOP,
                    "a %dx%dx%d desktop is already running; pass restart to replace it"
                    % self.geometry,
                )
            self.guest.send(protocol.result(call_id, self.describe()))
            return
        if self.xvfb is not None and self.xvfb.alive:
            self.state = "stopped"  # its exit is ours, not a death to report
            StopCall(self, call_id, then=lambda: self._start_after_stop(call_id, args))
            return
        self.state = "stopped"
        self.death = None
        StartCall(self, call_id, args)

    def _start_after_stop(self, call_id: int, args: dict) -> None:
        self.state = "stopped"
        self.death = None
        try:
            StartCall(self, call_id, args)
        except CallError as exc:
            self.guest.call_done(call_id)
            self.guest.send(protocol.error(call_id, exc.code, exc.message))

    def op_input(self, call_id: int, args: dict) -> None:
        InputCall(self, call_id, args)

    def op_screenshot(self, call_id: int, args: dict) -> None:
        if args.get("settle"):
            InputCall(self, call_id, {"steps": [], "settle": args["settle"], "screenshot": args})
            return
        self.require_running()
        try:
            payload, width, height = self.capture(args, None)
        except CallError:
            raise
        except Exception as exc:
            raise CallError(protocol.E_DESKTOP, self.explain(exc)) from None
        self.guest.send(protocol.result(call_id, {"width": width, "height": height}, payload))

    def op_cursor(self, call_id: int, args: dict) -> None:
        self.require_running()
        assert self.xinput is not None
        try:
            x, y = self.xinput.pointer()
        except Exception as exc:
            raise CallError(protocol.E_DESKTOP, self.explain(exc)) from None
        self.guest.send(protocol.result(call_id, {"x": x, "y": y}))

    def op_status(self, call_id: int, args: dict) -> None:
        self.guest.send(protocol.result(call_id, self.describe()))

    def op_stop(self, call_id: int, args: dict) -> None:
        if self.xvfb is None or not self.xvfb.alive:
            self.forget_server()
            self.state = "stopped"
            self.death = None
            self.guest.send(protocol.result(call_id, {"state": self.state}))
            return
        self.state = "stopped"
        StopCall(self, call_id)

    def op_vnc(self, call_id: int, args: dict) -> None:
        if shutil.which("x11vnc") is None:
            raise CallError(
                protocol.E_DESKTOP,
                "this sandbox image has no VNC server (x11vnc) for the live view",
            )
        VncCall(self, call_id, args)

    def op_novnc(self, call_id: int, args: dict) -> None:
        """The noVNC client's modules (``core/`` and ``vendor/``), as one payload."""
        root = os.path.realpath(NOVNC_DIR)
        if not os.path.isdir(os.path.join(root, "core")):
            raise CallError(
                protocol.E_NOT_FOUND,
                "this sandbox image has no noVNC client (%s); use the desktop image" % NOVNC_DIR,
            )
        files: List[List[Any]] = []
        chunks: List[bytes] = []
        for top in ("core", "vendor"):
            for folder, _dirs, names in os.walk(os.path.join(root, top)):
                for name in sorted(names):
                    path = os.path.realpath(os.path.join(folder, name))
                    if not path.startswith(root + os.sep) or not name.endswith(".js"):
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                    files.append([os.path.relpath(path, root), len(data)])
                    chunks.append(data)
        self.guest.send(protocol.result(call_id, {"files": files}, b"".join(chunks)))


def register(guest: Any) -> None:
    service = DesktopService(guest)
    guest.desktop = service
    guest.cleanups.append(service.shutdown)

    def op(method: Callable[[int, dict], None]) -> Callable[[int, dict, bytes], None]:
        def handler(call_id: int, args: dict, payload: bytes) -> None:
            try:
                method(call_id, args)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise CallError(
                        protocol.E_DESKTOP, "no space left for the desktop: %s" % exc
                    ) from None
                raise

        return handler

    guest.handlers.update(
        {
            protocol.OP_DESKTOP_START: op(service.op_start),
            protocol.OP_DESKTOP_STOP: op(service.op_stop),
            protocol.OP_DESKTOP_STATUS: op(service.op_status),
            protocol.OP_DESKTOP_SCREENSHOT: op(service.op_screenshot),
            protocol.OP_DESKTOP_INPUT: op(service.op_input),
            protocol.OP_DESKTOP_CURSOR: op(service.op_cursor),
            protocol.OP_DESKTOP_VNC: op(service.op_vnc),
            protocol.OP_DESKTOP_NOVNC: op(service.op_novnc),
        }
    )
