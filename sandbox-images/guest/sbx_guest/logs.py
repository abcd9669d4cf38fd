"""The guest's log: JSON lines on stderr, which the orchestrator re-logs under the
session's id (stdout is the protocol stream and must carry nothing else)."""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Any


def log(event: str, **fields: Any) -> None:
    fields["event"] = event
    fields["guest"] = True
    try:
        sys.stderr.write(json.dumps(fields, default=str) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
