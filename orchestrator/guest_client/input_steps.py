"""The desktop's input steps, as the guest's ``desktop.input`` reads them.

One constructor per step, so that a step is spelled in this module only (the
guest's reader is ``sbx_guest/desktop_input.py``): the desktop builds clicks,
drags, keys and typing out of these, and the request carries them as they are.
"""

from __future__ import annotations

from typing import Literal

from typing_extensions import TypedDict

__all__ = [
    "ButtonStep",
    "InputStep",
    "KeyStep",
    "MoveStep",
    "SleepStep",
    "TypeStep",
    "button",
    "key",
    "move",
    "sleep",
    "type_text",
]


class MoveStep(TypedDict):
    op: Literal["move"]
    x: int
    y: int


class ButtonStep(TypedDict):
    op: Literal["button"]
    button: int
    """X's button number: 1-3 left, middle, right; 4-7 scroll up, down, left, right."""
    down: bool


class KeyStep(TypedDict):
    op: Literal["key"]
    key: str
    """An X keysym name (``Return``, ``ctrl``...), as ``desktop.keys`` canonicalises it."""
    down: bool


class TypeStep(TypedDict):
    op: Literal["type"]
    text: str
    delay_ms: float


class SleepStep(TypedDict):
    op: Literal["sleep"]
    ms: float


InputStep = MoveStep | ButtonStep | KeyStep | TypeStep | SleepStep


def move(x: int, y: int) -> MoveStep:
    return {"op": "move", "x": x, "y": y}


def button(number: int, *, down: bool) -> ButtonStep:
    return {"op": "button", "button": number, "down": down}


def key(name: str, *, down: bool) -> KeyStep:
    return {"op": "key", "key": name, "down": down}


def type_text(text: str, delay_ms: float) -> TypeStep:
    return {"op": "type", "text": text, "delay_ms": delay_ms}


def sleep(ms: float) -> SleepStep:
    return {"op": "sleep", "ms": ms}
