"""The X server: bringing Xvfb up (then the window manager), and taking the desktop down.

``StartCall`` starts Xvfb with ``-displayfd``: the server writes its display
number once it accepts connections, so nothing polls its socket.  Then it
connects for input, maps the framebuffer, starts the window manager (if
any) and answers once that manages the screen, or after a capped wait.
``StopCall`` stops every desktop process and answers once Xvfb is gone, so
the display number can be used again at once.  Must not: answer ``start``
before the server accepts connections, or leave a half-started server
behind when a start fails or is cancelled.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Optional

from . import protocol
from .desktop_call import DesktopCall
from .desktop_child import RUNTIME_DIR, Child, describe_status
from .errors import CallError
from .xinput import XInput, xlib
from .xscreen import Framebuffer, pillow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .desktop import DesktopService


class StartCall(DesktopCall):
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
            % (describe_status(status), (": " + log) if log else ""),
        )

    def cleanup(self) -> None:
        self._stop_reading()
        self.service.stop_children(wait=False)

    def cancel(self) -> None:
        self.fail(protocol.E_DESKTOP, "starting the desktop was cancelled")


class StopCall(DesktopCall):
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
