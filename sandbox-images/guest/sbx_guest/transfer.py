"""Streamed transfers (guest extension ``transfer``): large files and whole folders.

A file call of the base guest carries its bytes in one frame, which caps it
at the frame size and holds it whole in memory.  A transfer instead runs a
short-lived child of the guest's own Python (``transfer_child``) as the
session's user and reuses everything a command has: input as flow-controlled
``data`` frames into its stdin, output as flow-controlled ``out`` frames
from its stdout, its deadline, its cancel (TERM, then KILL).  So neither side
ever holds more than a window of the data, and a transfer is stopped like
any command.  The child's last line on stderr is its JSON verdict.

Operations: ``transfer.write`` (stdin to a file, atomically), ``transfer.read``
(a file to stdout), ``transfer.put_dir`` (a tar stream on stdin unpacked into
a folder), ``transfer.get_dir`` (a folder as a tar stream on stdout).  Paths
are confined to the allowed roots by the child, exactly as file calls are.

Must not: read or write the data itself (the event loop must never block on
a disk), or run the child as anyone but the session's user.
"""

from __future__ import annotations

import json
import os
import sys

from . import protocol
from .errors import CallError
from .execcall import ExecCall

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Any, List

GUEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The directory holding ``sbx_guest``: the child puts it on its ``sys.path``."""

MODES = {
    protocol.OP_TRANSFER_WRITE: ("write", True),
    protocol.OP_TRANSFER_READ: ("read", False),
    protocol.OP_TRANSFER_PUT_DIR: ("put_dir", True),
    protocol.OP_TRANSFER_GET_DIR: ("get_dir", False),
}
"""op -> (the child's mode, whether the host streams input to it)."""

UNLIMITED_OUTPUT = 1 << 62
_CHILD_MAIN = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from sbx_guest.transfer_child import main; sys.exit(main(sys.argv[2:]))"
)


def python_argv() -> List[str]:
    """How to start this guest's own Python: through the bundle's loader when it has one."""
    runtime = os.path.join(os.path.dirname(GUEST_DIR), "runtime")
    loader = os.path.join(runtime, "lib", "ld.so")
    if os.path.exists(loader):
        return [
            loader,
            "--library-path",
            os.path.join(runtime, "lib"),
            os.path.join(runtime, "bin", "python3"),
        ]
    return [sys.executable]


def register(guest: Any) -> None:
    for op, (mode, takes_input) in MODES.items():
        guest.handlers[op] = _handler(guest, mode, takes_input)


def _handler(guest: Any, mode: str, takes_input: bool) -> Any:
    def start(call_id: int, args: dict, payload: bytes) -> None:
        if payload:
            raise CallError(protocol.E_BAD_REQUEST, "a transfer's data follows as data frames")
        spec = {key: value for key, value in args.items() if key not in _EXEC_KEYS}
        spec["roots"] = guest.files.roots
        spec.setdefault("limit", guest.files.max_file)
        exec_args = {
            "argv": [
                *python_argv(),
                "-I",
                "-S",
                "-c",
                _CHILD_MAIN,
                GUEST_DIR,
                mode,
                json.dumps(spec),
            ],
            "cwd": "/",
            "timeout": args.get("timeout"),
            "grace": args.get("grace", guest.defaults.get("kill_grace", 2.0)),
            "window": args.get("window", protocol.DEFAULT_WINDOW),
            "max_output": UNLIMITED_OUTPUT,
            "env": {"LC_ALL": "C.UTF-8"},
        }
        if takes_input:
            exec_args["stdin"] = "stream"
        guest.calls[call_id] = None
        guest.calls[call_id] = ExecCall(
            guest.loop, call_id, exec_args, b"", guest.send, guest.call_done, guest.defaults
        )

    return start


_EXEC_KEYS = ("timeout", "grace", "window")
