"""A streamed exec's NDJSON events, passed through to a terminal.

The events of ``POST /v1/sessions/{id}/exec`` with ``Accept:
application/x-ndjson``: ``stdout``/``stderr`` chunks (text, or ``data_b64``
where not UTF-8), ``dropped`` when a slow reader lost output, then one
``result`` or ``error``.  Standard library only: the thin ``sbx run`` client
imports it before anything heavier.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterable
from typing import Any, BinaryIO

__all__ = ["EXIT_TIMEOUT", "StreamFailed", "event_bytes", "exit_status", "relay"]

EXIT_TIMEOUT = 124
"""The exit status of a command that timed out, as timeout(1) gives."""


class StreamFailed(Exception):
    """The stream carried an error, or ended without a result."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def event_bytes(event: dict[str, Any]) -> bytes:
    """The output bytes of a stdout/stderr event (text, or base64 where not UTF-8)."""
    if "data_b64" in event:
        return base64.b64decode(event["data_b64"])
    return str(event.get("data", "")).encode("utf-8")


def relay(events: Iterable[dict[str, Any]], out: BinaryIO, err: BinaryIO) -> dict[str, Any]:
    """Write the output events through as they come; return the ``result`` event."""
    for event in events:
        kind = event.get("type")
        if kind in ("stdout", "stderr"):
            target = out if kind == "stdout" else err
            target.write(event_bytes(event))
            target.flush()
        elif kind == "dropped":
            print(
                f"sbx: {event.get('bytes')} bytes of output dropped (slow reader)", file=sys.stderr
            )
        elif kind == "error":
            raise StreamFailed(
                int(event.get("status", 500)),
                str(event.get("error", "error")),
                str(event.get("message", "the command failed")),
            )
        elif kind == "result":
            return event
    raise StreamFailed(502, "incomplete", "the server ended the stream without a result")


def exit_status(result: dict[str, Any]) -> int:
    """The command's exit status, 124 when it timed out."""
    return EXIT_TIMEOUT if result.get("timed_out") else int(result["exit_code"])
