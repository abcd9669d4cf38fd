"""The desktop extension: an X server, a window manager and a VNC server, supervised.

Operations (prefix ``desktop``): ``start`` brings up Xvfb (its screen in a
framebuffer file), waits until the server answers, then a window manager;
``input`` runs a list of keyboard and mouse steps, waits until the screen
settles (stops changing, capped) and returns a screenshot; ``screenshot``,
``cursor``, ``status``, ``stop``; ``vnc`` starts x11vnc on loopback for the
live view and ``novnc`` hands out the noVNC client files of this image.

This module holds the desktop's state (stopped, starting, running, dead)
and its operations; the parts are beside it: ``desktop_xserver`` (start,
stop), ``desktop_wm``, ``desktop_vnc`` (the live view), ``desktop_input``
(actions), ``desktop_child`` (its processes), ``desktop_call`` (its calls).

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
from typing import Any, Callable, Dict, Optional, Set, Tuple

from . import protocol
from .desktop_call import DesktopCall
from .desktop_child import RUNTIME_DIR, Child, describe_status
from .desktop_input import InputCall
from .desktop_vnc import VncCall, novnc_client
from .desktop_wm import wm_command
from .desktop_xserver import StartCall, StopCall
from .errors import CallError
from .xinput import XInput
from .xscreen import Framebuffer, render


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
        self.pending: Set[DesktopCall] = set()

    # -- children -------------------------------------------------------------

    def start_wm(self, name: str) -> None:
        argv, env = wm_command(name)
        self.wm_name = name
        self.wm = Child(
            self.guest,
            "the window manager",
            argv,
            env,
            os.path.join(RUNTIME_DIR, "wm.log"),
            self.on_child_exit,
        )

    def on_child_exit(self, child: Child, status: int) -> None:
        from .logs import log

        if child is self.xvfb:
            log("X server exited", status=describe_status(status), display=self.number)
            tail = child.log_tail()
            for call in list(self.pending):
                if isinstance(call, StartCall):
                    call.server_died(status, tail)
            if self.state in ("running", "starting"):
                self.state = "dead"
                self.death = "the X server %s" % describe_status(status)
                for call in list(self.pending):
                    call.fail(protocol.E_DESKTOP, self.death + "; " + self.restart_hint())
                self._drop_connections()
                for other in [self.wm, *self.vnc.values()]:
                    if other is not None:
                        other.signal(signal.SIGKILL)
        elif child is self.wm:
            log("window manager exited", status=describe_status(status))
        else:
            log("VNC server exited", status=describe_status(status))

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
        value, payload = novnc_client()
        self.guest.send(protocol.result(call_id, value, payload))


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
