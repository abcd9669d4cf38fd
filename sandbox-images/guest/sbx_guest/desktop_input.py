"""Desktop actions: keyboard and mouse steps, a wait for the screen to settle, a capture.

``InputCall`` turns the request's steps into X events (``xinput``), sends
them on the held X connection -- a ``sleep`` step is a timer, never a
sleep -- and then, when asked, compares framebuffer snapshots every
``POLL`` seconds until the screen has been still for ``quiet_ms`` (or
``timeout_ms`` passed), so the screenshot that follows shows what the action
did.  Must not: block the guest's thread, or leave a key or button held when
an action fails or is cancelled.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Optional, Set

from . import protocol
from .desktop_call import DesktopCall
from .errors import CallError
from .xinput import Event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .desktop import DesktopService

POLL = 0.012
"""Seconds between framebuffer comparisons while waiting for the screen to settle."""


class InputCall(DesktopCall):
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
