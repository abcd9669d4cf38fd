"""Computer use: a session's X desktop, screen scaling, key names and the live view.

``Desktop`` is the session's handle on its X server (``session.desktop``);
``scaling`` maps what Claude sees to the real screen; ``keys`` reads
xdotool-style key names; ``view`` serves the live view.  The ``computer``
tool itself is ``orchestrator.tools.computer``.
"""

from orchestrator.desktop.desktop import (
    ActionResult,
    Desktop,
    Screenshot,
    ScreenSpec,
    parse_screen,
)
from orchestrator.desktop.scaling import STANDARD_TARGETS, Scaling, Size, choose_target

__all__ = [
    "STANDARD_TARGETS",
    "ActionResult",
    "Desktop",
    "Scaling",
    "ScreenSpec",
    "Screenshot",
    "Size",
    "choose_target",
    "parse_screen",
]
