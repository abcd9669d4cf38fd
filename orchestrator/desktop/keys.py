"""Key names as Claude writes them, turned into the guest's key steps.

Claude's ``key`` action uses xdotool syntax: combinations joined by ``+``
(``ctrl+shift+t``), several separated by spaces (``ctrl+a Delete``), with X
keysym names (``Return``, ``Page_Down``) and the common aliases it also
writes (``enter``, ``esc``, ``cmd``, ``pagedown``...).  Aliases are resolved
here; real keysym names and single characters go to the guest, which knows
the X keysym table and says which name it does not know.

Pure text processing: no I/O.
"""

from __future__ import annotations

from orchestrator.guest_client import input_steps as step
from orchestrator.guest_client.input_steps import InputStep

__all__ = ["KEY_ALIASES", "KeyNameError", "combo_steps", "hold_steps", "parse_combos"]

Step = InputStep


class KeyNameError(ValueError):
    """A key combination that cannot be parsed (empty, or an empty part)."""


KEY_ALIASES: dict[str, str] = {
    "ctrl": "Control_L",
    "control": "Control_L",
    "ctl": "Control_L",
    "lctrl": "Control_L",
    "rctrl": "Control_R",
    "alt": "Alt_L",
    "lalt": "Alt_L",
    "ralt": "Alt_R",
    "altgr": "ISO_Level3_Shift",
    "option": "Alt_L",
    "shift": "Shift_L",
    "lshift": "Shift_L",
    "rshift": "Shift_R",
    "super": "Super_L",
    "win": "Super_L",
    "windows": "Super_L",
    "cmd": "Super_L",
    "command": "Super_L",
    "meta": "Meta_L",
    "enter": "Return",
    "return": "Return",
    "ret": "Return",
    "esc": "Escape",
    "escape": "Escape",
    "backspace": "BackSpace",
    "bksp": "BackSpace",
    "del": "Delete",
    "delete": "Delete",
    "ins": "Insert",
    "insert": "Insert",
    "tab": "Tab",
    "space": "space",
    "spacebar": "space",
    "pgup": "Prior",
    "pageup": "Prior",
    "page_up": "Prior",
    "prior": "Prior",
    "pgdn": "Next",
    "pagedown": "Next",
    "page_down": "Next",
    "next": "Next",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "arrowup": "Up",
    "arrowdown": "Down",
    "arrowleft": "Left",
    "arrowright": "Right",
    "arrow_up": "Up",
    "arrow_down": "Down",
    "arrow_left": "Left",
    "arrow_right": "Right",
    "home": "Home",
    "end": "End",
    "capslock": "Caps_Lock",
    "caps_lock": "Caps_Lock",
    "numlock": "Num_Lock",
    "scrolllock": "Scroll_Lock",
    "print": "Print",
    "printscreen": "Print",
    "prtsc": "Print",
    "pause": "Pause",
    "break": "Break",
    "menu": "Menu",
    "apps": "Menu",
    "plus": "plus",
    "minus": "minus",
    "volumeup": "XF86AudioRaiseVolume",
    "volumedown": "XF86AudioLowerVolume",
    "volumemute": "XF86AudioMute",
    "mute": "XF86AudioMute",
}
KEY_ALIASES.update({f"f{n}": f"F{n}" for n in range(1, 36)})


def _canonical(name: str) -> str:
    if len(name) == 1:
        return name  # a character: its own keysym (the guest maps it)
    return KEY_ALIASES.get(name.lower(), name)


def _split_combo(combo: str) -> list[str]:
    """``ctrl+shift+t`` → parts; a ``+`` key itself is written ``plus`` or as a trailing ``+``."""
    if combo == "+":
        return ["plus"]
    parts = combo.split("+")
    if combo.endswith("++"):
        parts = [*parts[:-2], "plus"]
    if any(not part for part in parts):
        raise KeyNameError(f"{combo!r} has an empty key name; write keys like ctrl+shift+t")
    return [_canonical(part) for part in parts]


def parse_combos(text: str) -> list[list[str]]:
    """xdotool ``key`` syntax → combinations of canonical key names, in order."""
    combos = [_split_combo(chunk) for chunk in text.split()]
    if not combos:
        raise KeyNameError("no key given; write keys like Return, ctrl+c or alt+Tab")
    return combos


def combo_steps(text: str) -> list[Step]:
    """Press and release each combination: modifiers down in order, up in reverse."""
    steps: list[Step] = []
    for combo in parse_combos(text):
        steps += [step.key(name, down=True) for name in combo]
        steps += [step.key(name, down=False) for name in reversed(combo)]
    return steps


def hold_steps(text: str | None) -> tuple[list[Step], list[Step]]:
    """Steps to press ``text`` (a modifier combination) before an action and release it after."""
    if not text:
        return [], []
    keys = [key for combo in parse_combos(text) for key in combo]
    down: list[Step] = [step.key(name, down=True) for name in keys]
    up: list[Step] = [step.key(name, down=False) for name in reversed(keys)]
    return down, up
