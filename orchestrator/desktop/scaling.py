"""Screen scaling: the size Claude sees versus the size the X server has.

Claude works best on screens no larger than XGA/WXGA/FWXGA.  A larger
screen is advertised at the standard size of the same aspect ratio (within
0.02, as the reference implementation does); screenshots are scaled down to
it and coordinates Claude sends are scaled up.  A large screen of another
shape is scaled, aspect kept, to the FWXGA pixel budget.  Screens never get
scaled up.

Pure arithmetic: no I/O, no session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["STANDARD_TARGETS", "Scaling", "Size", "choose_target"]


@dataclass(frozen=True, order=True)
class Size:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def pixels(self) -> int:
        return self.width * self.height


STANDARD_TARGETS: dict[str, Size] = {
    "XGA": Size(1024, 768),
    "WXGA": Size(1280, 800),
    "FWXGA": Size(1366, 768),
}
"""The sizes Claude is trained on, by name."""

_ASPECT_TOLERANCE = 0.02
_BUDGET = STANDARD_TARGETS["FWXGA"].pixels


def choose_target(screen: Size, *, enabled: bool = True) -> Size:
    """The size to advertise for a real screen of ``screen`` pixels."""
    if not enabled:
        return screen
    ratio = screen.width / screen.height
    for target in STANDARD_TARGETS.values():
        if abs(target.width / target.height - ratio) < _ASPECT_TOLERANCE:
            return target if target.width < screen.width else screen
    if screen.pixels <= _BUDGET:
        return screen
    factor = math.sqrt(_BUDGET / screen.pixels)
    return Size(
        max(1, math.floor(screen.width * factor)), max(1, math.floor(screen.height * factor))
    )


@dataclass(frozen=True)
class Scaling:
    """The mapping between advertised (model) and real (screen) coordinates."""

    screen: Size
    advertised: Size

    @classmethod
    def for_screen(cls, screen: Size, *, enabled: bool = True) -> Scaling:
        return cls(screen, choose_target(screen, enabled=enabled))

    @property
    def active(self) -> bool:
        return self.screen != self.advertised

    def contains(self, x: int, y: int) -> bool:
        """Whether an advertised point is on the screen."""
        return 0 <= x < self.advertised.width and 0 <= y < self.advertised.height

    def bounds_text(self) -> str:
        return (
            f"x must be in 0..{self.advertised.width - 1} and y in "
            f"0..{self.advertised.height - 1} (the screen is {self.advertised})"
        )

    def to_screen(self, x: int, y: int) -> tuple[int, int]:
        """An advertised point as a real screen point (kept on the screen)."""
        real_x = round(x * self.screen.width / self.advertised.width)
        real_y = round(y * self.screen.height / self.advertised.height)
        return min(real_x, self.screen.width - 1), min(real_y, self.screen.height - 1)

    def to_model(self, x: int, y: int) -> tuple[int, int]:
        """A real screen point as the model sees it."""
        model_x = round(x * self.advertised.width / self.screen.width)
        model_y = round(y * self.advertised.height / self.screen.height)
        return min(model_x, self.advertised.width - 1), min(model_y, self.advertised.height - 1)

    def region_to_screen(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        """An advertised rectangle (corners, ``x1``/``y1`` exclusive) in real pixels.

        Edges are scaled, not pixels, so the real rectangle covers exactly
        what the advertised one shows, at full resolution.
        """
        sx = self.screen.width / self.advertised.width
        sy = self.screen.height / self.advertised.height
        real = (
            max(0, math.floor(x0 * sx)),
            max(0, math.floor(y0 * sy)),
            min(self.screen.width, math.ceil(x1 * sx)),
            min(self.screen.height, math.ceil(y1 * sy)),
        )
        return real
