"""Computer use: a session's X desktop, screen scaling and key names.

``Desktop`` is the session's handle on its X server (``session.desktop``);
``scaling`` maps what Claude sees to the real screen; ``keys`` reads
xdotool-style key names; ``screen`` parses screen sizes.  The ``computer``
tool itself is ``orchestrator.tools.computer``; the live view is
``orchestrator.live_view``.

Names are imported on first use (PEP 562), so that importing a light module
of this package (``screen``, for option validation) does not load the rest.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from orchestrator.desktop.desktop import ActionResult, Desktop, Screenshot
    from orchestrator.desktop.scaling import STANDARD_TARGETS, Scaling, Size, choose_target
    from orchestrator.desktop.screen import ScreenSpec, parse_screen

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

_EXPORTS = {
    "ActionResult": "orchestrator.desktop.desktop",
    "Desktop": "orchestrator.desktop.desktop",
    "Screenshot": "orchestrator.desktop.desktop",
    "STANDARD_TARGETS": "orchestrator.desktop.scaling",
    "Scaling": "orchestrator.desktop.scaling",
    "Size": "orchestrator.desktop.scaling",
    "choose_target": "orchestrator.desktop.scaling",
    "ScreenSpec": "orchestrator.desktop.screen",
    "parse_screen": "orchestrator.desktop.screen",
}


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.desktop' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
