"""The X screen a session asks for: ``WIDTHxHEIGHT[xDEPTH]``, parsed and checked.

Must not: import anything of the desktop's calls (options validation imports
this module, and must stay light).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.errors import ConfigError

__all__ = ["ScreenSpec", "parse_screen"]

_SCREEN = re.compile(r"^\s*(\d{3,5})\s*[xX\u00d7]\s*(\d{3,5})(?:\s*[xX\u00d7]\s*(\d{2}))?\s*$")


@dataclass(frozen=True)
class ScreenSpec:
    """The X screen a session asks for."""

    width: int
    height: int
    depth: int = 24

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.depth}"


def parse_screen(text: str) -> ScreenSpec:
    """``"1920x1080"`` or ``"1280x800x16"`` → ``ScreenSpec``; a clear error otherwise."""
    match = _SCREEN.match(text)
    if not match:
        raise ConfigError(
            f"screen {text!r} is not WIDTHxHEIGHT[xDEPTH]; write e.g. 1280x800 or 1920x1080x24"
        )
    width, height = int(match.group(1)), int(match.group(2))
    depth = int(match.group(3) or 24)
    if not (320 <= width <= 7680 and 200 <= height <= 4320):
        raise ConfigError(f"screen {text!r} is out of range: 320..7680 x 200..4320 pixels")
    if depth not in (16, 24):
        raise ConfigError(f"screen depth {depth} is not supported; use 24 or 16")
    return ScreenSpec(width, height, depth)
