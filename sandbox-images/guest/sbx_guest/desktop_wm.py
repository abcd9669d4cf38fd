"""The window manager: fluxbox, with settings that suit a screen driven by a model.

One workspace, click to focus, a toolbar with the windows and a clock, no
background image (a plain screen compresses well and settles fast).  The
settings are written to ``~/.fluxbox`` unless the user has their own there,
which are kept; where HOME is read-only they go under ``RUNTIME_DIR``.
The desktop starts the command like its other servers.  Must not: overwrite
the user's own settings.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

from . import protocol
from .desktop_child import RUNTIME_DIR
from .errors import CallError

_FLUXBOX_INIT = """\
session.configVersion: 13
session.menuFile: /etc/X11/fluxbox/fluxbox-menu
session.keyFile: ~/.fluxbox/keys
session.appsFile: ~/.fluxbox/apps
session.styleFile: /usr/share/fluxbox/styles/Squared_for_Debian
session.styleOverlay: ~/.fluxbox/overlay
session.screen0.rootCommand:
session.screen0.workspaces: 1
session.screen0.workspaceNames: Desktop
session.screen0.focusModel: ClickFocus
session.screen0.clickRaises: true
session.screen0.toolbar.visible: true
session.screen0.toolbar.widthPercent: 100
session.screen0.toolbar.tools: iconbar, clock
session.screen0.strftimeFormat: %a %d %b %H:%M
session.screen0.slit.autoHide: true
"""


def wm_command(name: str) -> Tuple[List[str], Dict[str, str]]:
    """The argv and environment of the window manager ``name``, its settings in place."""
    if name != "fluxbox":
        raise CallError(protocol.E_BAD_REQUEST, "unknown window manager %r" % name)
    home = os.environ.get("HOME") or RUNTIME_DIR
    env = dict(os.environ)
    config = os.path.join(home, ".fluxbox")
    try:
        _write_fluxbox_config(config)
    except OSError:
        config = os.path.join(RUNTIME_DIR, "home", ".fluxbox")
        _write_fluxbox_config(config)
        env["HOME"] = os.path.dirname(config)
    return ["fluxbox", "-rc", os.path.join(config, "init")], env


def _write_fluxbox_config(folder: str) -> None:
    """Our fluxbox settings, unless the user made their own (then theirs are kept)."""
    if os.path.exists(os.path.join(folder, "init")):
        return
    os.makedirs(folder, exist_ok=True)
    files = {
        "init": _FLUXBOX_INIT,
        "apps": "",
        "overlay": "background: none\n",
    }
    try:
        with open("/etc/X11/fluxbox/keys") as f:
            files["keys"] = f.read()
    except OSError:
        files["keys"] = ""
    for name, text in files.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
