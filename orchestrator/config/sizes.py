"""Sizes in configuration: ``"512m"``, ``"1g"``, ``"64KiB"`` or a number of bytes.

Must not: import anything of the orchestrator (every section uses it).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["ByteSize", "parse_bytes"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: Any) -> int:
    """``"512m"``, ``"1g"``, ``"64KiB"`` or an integer number of bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string such as '512m' or '1g'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match and match.group(2).lower() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    raise ValueError(
        f"{value!r} is not a size; use a number of bytes or a string such as '512m', '1g', '64KiB'"
    )


ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
"""An integer number of bytes that also accepts ``"512m"``-style strings."""
