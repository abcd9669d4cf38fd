"""Keyboard and mouse for the desktop: XTEST requests on one persistent X connection.

Spawning ``xdotool`` costs a process and a fresh X connection per action
(10-100 ms here); a request on a connection held open costs well under a
millisecond.  This module turns key names, characters and pointer moves
into XTEST fake-input events, the way xdotool does: a character missing
from the keyboard map is bound to a spare keycode for the time it is typed,
and a spare keycode is never rebound while a client may still be reading an
earlier key press of it.

It uses python-xlib (Debian's python3-xlib, carried by the desktop image)
and says so clearly where it is missing.  Must not: block on anything but a
round trip to the local X server, or know about screenshots or the protocol
to the host.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from . import protocol
from .errors import CallError

REMAP_GUARD = 0.25
"""Seconds a spare keycode stays bound to a character after its last use."""

SHIFT = "Shift_L"

Event = Tuple[Any, ...]
"""("motion", x, y) | ("button", n, down) | ("key", keycode, down) | ("remap", keycode,
keysym) | ("sleep", seconds) | ("sync",)"""

_xlib: Any = None


def xlib() -> Any:
    """The python-xlib modules, imported on first use."""
    global _xlib
    if _xlib is None:
        from .xscreen import system_packages

        system_packages()
        try:
            import Xlib.keysymdef
            from Xlib import XK, X, display, error
            from Xlib.ext import xtest
        except ImportError:
            raise CallError(
                protocol.E_DESKTOP,
                "desktop input needs python-xlib (Debian package python3-xlib) in the sandbox "
                "image; use the sbx-desktop image or add python3-xlib to the image's recipe",
            ) from None
        for group in getattr(Xlib.keysymdef, "__all__", ()):
            try:
                XK.load_keysym_group(group)
            except Exception:  # an odd group must not break the common ones
                pass

        class _Modules:
            pass

        mods = _Modules()
        mods.X, mods.XK, mods.display, mods.error, mods.xtest = X, XK, display, error, xtest
        _xlib = mods
    return _xlib


def char_keysym(char: str) -> int:
    """The keysym that types ``char``: Latin-1 keysyms are the code point, others are Unicode."""
    code = ord(char)
    if char in ("\n", "\r"):
        return 0xFF0D  # Return
    if char == "\t":
        return 0xFF09  # Tab
    if char == "\b":
        return 0xFF08  # BackSpace
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 | code


class XInput:
    """Input into one X display over a connection kept open for the desktop's life."""

    def __init__(self, display_name: str) -> None:
        mods = xlib()
        self.X = mods.X
        self.XK = mods.XK
        self.xtest = mods.xtest
        self.errors: List[str] = []
        try:
            self.d = mods.display.Display(display_name)
        except Exception as exc:
            raise CallError(
                protocol.E_DESKTOP, "cannot connect to X display %s: %s" % (display_name, exc)
            ) from None
        self.d.set_error_handler(self._on_error)
        if not self.d.has_extension("XTEST"):
            self.d.close()
            raise CallError(protocol.E_DESKTOP, "the X server has no XTEST extension")
        self.screen = self.d.screen()
        self.root = self.screen.root
        self.held_keys: Set[int] = set()
        self.held_buttons: Set[int] = set()
        self._auto_shift: Dict[int, bool] = {}
        self._lower_names: Optional[Dict[str, int]] = None
        self._load_keymap()

    # -- connection -------------------------------------------------------

    def _on_error(self, err: Any, *args: Any) -> None:
        self.errors.append(str(err))
        del self.errors[:-20]

    def sync(self) -> None:
        """A round trip: when it returns, the server has handled every request sent before."""
        self.d.sync()
        while self.d.pending_events():
            event = self.d.next_event()
            if event.type == self.X.MappingNotify:
                self.d.refresh_keyboard_mapping(event)

    def flush(self) -> None:
        self.d.flush()

    def close(self) -> None:
        try:
            self.d.close()
        except Exception:
            pass

    # -- keyboard map -----------------------------------------------------

    def _load_keymap(self) -> None:
        info = self.d.display.info
        first, last = info.min_keycode, info.max_keycode
        rows = self.d.get_keyboard_mapping(first, last - first + 1)
        self.codes: Dict[int, Tuple[int, int]] = {}
        """keysym -> (keycode, column): column 0 plain, 1 with Shift."""
        self.spare: List[int] = []
        for index, row in enumerate(rows):
            keycode = first + index
            if not any(row):
                if keycode > 8:
                    self.spare.append(keycode)
                continue
            for column in (0, 1):
                if column < len(row) and row[column]:
                    known = self.codes.get(row[column])
                    if known is None or (known[1] == 1 and column == 0):
                        self.codes[row[column]] = (keycode, column)
        self._spare_keysym: Dict[int, int] = {}
        self._spare_used: Dict[int, float] = dict.fromkeys(self.spare, 0.0)

    def keysym(self, name: str) -> int:
        """The keysym of an xdotool-style key name (``Return``, ``a``, ``F5``, ``ctrl`` is not
        one: the host translates aliases)."""
        XK = self.XK
        keysym = XK.string_to_keysym(name)
        if not keysym and len(name) == 1:
            keysym = char_keysym(name)
        if not keysym:
            if self._lower_names is None:
                self._lower_names = {
                    key[3:].lower(): value
                    for key, value in vars(XK).items()
                    if key.startswith("XK_") and isinstance(value, int)
                }
            keysym = self._lower_names.get(name.lower(), 0)
        if not keysym and name.lower().startswith("u+"):
            try:
                keysym = 0x01000000 | int(name[2:], 16)
            except ValueError:
                keysym = 0
        if not keysym:
            raise CallError(
                protocol.E_BAD_REQUEST,
                "unknown key name %r: use xdotool/X keysym names such as Return, Escape, "
                "BackSpace, Tab, Page_Down, F5, a, ctrl+c, alt+Tab" % name,
            )
        return int(keysym)

    def _bind(self, keysym: int) -> Iterator[Event]:
        """Events that make ``keysym`` typeable; sets ``self._bound`` to (keycode, column)."""
        found = self.codes.get(keysym)
        if found is not None:
            self._bound = found
            return
        bound = [code for code, sym in self._spare_keysym.items() if sym == keysym]
        if bound:
            self._spare_used[bound[0]] = time.monotonic()
            self._bound = (bound[0], 0)
            return
        if not self.spare:
            raise CallError(
                protocol.E_DESKTOP,
                "cannot type %r: it is not on the keyboard map and no spare keycode is free"
                % chr(keysym & 0xFFFFFF if keysym > 0x01000000 else keysym),
            )
        keycode = min(self.spare, key=lambda code: self._spare_used[code])
        wait = self._spare_used[keycode] + REMAP_GUARD - time.monotonic()
        if wait > 0:
            yield ("sleep", wait)
        yield ("remap", keycode, keysym)
        yield ("sync",)
        self._spare_used[keycode] = time.monotonic()
        self._bound = (keycode, 0)

    # -- events -------------------------------------------------------------

    def key_events(self, name: str, down: bool) -> Iterator[Event]:
        """Press or release one named key, adding Shift for a shifted symbol (as xdotool does)."""
        keysym = self.keysym(name)
        if down:
            yield from self._bind(keysym)
            keycode, column = self._bound
            shift = column == 1 and not self._shift_held()
            if shift:
                yield ("key", self._shift_code(), True)
            self._auto_shift[keycode] = shift
            yield ("key", keycode, True)
        else:
            found = self.codes.get(keysym)
            if found is None:
                bound = [code for code, sym in self._spare_keysym.items() if sym == keysym]
                if not bound:
                    return  # never pressed: releasing it is a no-op
                found = (bound[0], 0)
            keycode = found[0]
            yield ("key", keycode, False)
            if self._auto_shift.pop(keycode, False):
                yield ("key", self._shift_code(), False)

    def type_events(self, text: str, delay: float) -> Iterator[Event]:
        """Type ``text`` key by key; newlines are Return, tabs Tab."""
        previous = ""
        for char in text:
            if char == "\n" and previous == "\r":
                previous = char
                continue  # CRLF is one Return
            previous = char
            keysym = char_keysym(char)
            yield from self._bind(keysym)
            keycode, column = self._bound
            shift = column == 1 and not self._shift_held()
            if shift:
                yield ("key", self._shift_code(), True)
            yield ("key", keycode, True)
            yield ("key", keycode, False)
            if shift:
                yield ("key", self._shift_code(), False)
            if delay > 0:
                yield ("sleep", delay)

    def _shift_code(self) -> int:
        return self.codes[self.XK.string_to_keysym(SHIFT)][0]

    def _shift_held(self) -> bool:
        shift = self.codes.get(self.XK.string_to_keysym(SHIFT))
        return shift is not None and shift[0] in self.held_keys

    def apply(self, event: Event) -> None:
        """Send one event to the server (buffered until the next flush or sync)."""
        X = self.X
        kind = event[0]
        if kind == "motion":
            self.xtest.fake_input(self.d, X.MotionNotify, x=int(event[1]), y=int(event[2]))
        elif kind == "button":
            button, down = int(event[1]), bool(event[2])
            self.xtest.fake_input(self.d, X.ButtonPress if down else X.ButtonRelease, button)
            (self.held_buttons.add if down else self.held_buttons.discard)(button)
        elif kind == "key":
            keycode, down = int(event[1]), bool(event[2])
            self.xtest.fake_input(self.d, X.KeyPress if down else X.KeyRelease, keycode)
            (self.held_keys.add if down else self.held_keys.discard)(keycode)
        elif kind == "remap":
            keycode, keysym = int(event[1]), int(event[2])
            self.d.change_keyboard_mapping(keycode, [(keysym, keysym)])
            self._spare_keysym[keycode] = keysym
        elif kind == "sync":
            self.sync()
        else:
            raise CallError(protocol.E_BAD_REQUEST, "unknown input event %r" % (kind,))

    def release(self, keys: Set[int], buttons: Set[int]) -> None:
        """Let go of keys and buttons (a cancelled action must not leave Ctrl held down)."""
        X = self.X
        for button in sorted(buttons & self.held_buttons):
            self.xtest.fake_input(self.d, X.ButtonRelease, button)
            self.held_buttons.discard(button)
        for keycode in sorted(keys & self.held_keys, reverse=True):
            self.xtest.fake_input(self.d, X.KeyRelease, keycode)
            self.held_keys.discard(keycode)
        self.flush()

    # -- queries --------------------------------------------------------------

    def pointer(self) -> Tuple[int, int]:
        reply = self.root.query_pointer()
        return int(reply.root_x), int(reply.root_y)

    def wm_running(self) -> bool:
        """Whether an EWMH window manager has announced itself on the root window."""
        atom = self.d.intern_atom("_NET_SUPPORTING_WM_CHECK")
        return self.root.get_full_property(atom, self.X.AnyPropertyType) is not None

    def set_background(self, color: str) -> None:
        """Paint the root window a solid ``#rrggbb`` colour."""
        text = color.lstrip("#")
        if len(text) != 6:
            raise CallError(protocol.E_BAD_REQUEST, "background must be #rrggbb, got %r" % color)
        red, green, blue = (int(text[i : i + 2], 16) for i in (0, 2, 4))
        pixel = self.screen.default_colormap.alloc_color(red * 257, green * 257, blue * 257).pixel
        self.root.change_attributes(background_pixel=pixel)
        self.root.clear_area(0, 0, 0, 0)
        self.sync()
