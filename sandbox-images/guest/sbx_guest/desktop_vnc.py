"""The live view's servers: x11vnc on loopback, and the noVNC client files of this image.

``VncCall`` starts x11vnc on the display (view-only on the base port, taking
input on the next one), or reuses one already running, and answers once it
accepts connections; the host reaches it through a forwarded connection
(``net.connect``), so the sandbox needs no network.  ``novnc_client`` hands
out the image's noVNC modules, so the browser runs the client that matches
the server.  Must not: listen anywhere but loopback, or hand out files from
outside the noVNC directory.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Dict, List, Tuple

from . import protocol
from .desktop_call import DesktopCall
from .desktop_child import RUNTIME_DIR, Child
from .errors import CallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .desktop import DesktopService

NOVNC_DIR = "/usr/share/novnc"


class VncCall(DesktopCall):
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


def novnc_client() -> Tuple[Dict[str, Any], bytes]:
    """The noVNC client's modules (``core/``, ``vendor/``): their list, and one payload."""
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
    return {"files": files}, b"".join(chunks)
