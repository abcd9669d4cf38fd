"""Sizes in configuration: ``"512m"``, ``"1g"``, ``"64KiB"`` or a number of bytes.

Must not: import anything of the orchestrator (every section uses it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = [
    "MIN_MEMORY",
    "MIN_MEMORY_TEXT",
    "ByteSize",
    "MemoryShare",
    "MountSize",
    "human_bytes",
    "parse_bytes",
    "parse_mount_size",
]

MIN_MEMORY = 16 << 20
"""The least memory a sandbox may be given: its guest and a shell need about this much."""
MIN_MEMORY_TEXT = "16m"

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


_SIZE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"},
    ],
    "description": "bytes, or a size such as '512m', '1g', '64KiB'",
}

ByteSize = Annotated[int, BeforeValidator(parse_bytes), WithJsonSchema(_SIZE_SCHEMA)]
"""An integer number of bytes that also accepts ``"512m"``-style strings."""


def human_bytes(size: int) -> str:
    """``1073741824`` -> ``"1 GiB"``, ``1536 << 20`` -> ``"1.5 GiB"``: for messages."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class MemoryShare:
    """A mount's size as a share of the sandbox's memory (``"50%"``): it follows ``memory``."""

    percent: float

    def of(self, memory: int) -> int:
        """The size in bytes for a sandbox whose processes get ``memory`` (1 MiB at least)."""
        return max(1 << 20, int(memory * self.percent / 100))

    def __str__(self) -> str:
        return f"{self.percent:g}%"


def parse_mount_size(value: Any) -> int | MemoryShare:
    """A tmpfs size: bytes (``"512m"``, ``1073741824``) or a share of memory (``"50%"``)."""
    if isinstance(value, MemoryShare):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage; write e.g. '50%'") from None
        if not 0 < percent <= 400:
            raise ValueError(f"{value!r}: a share of memory must be over 0% and at most 400%")
        return MemoryShare(percent)
    return parse_bytes(value)


MountSize = Annotated[
    int | MemoryShare,
    BeforeValidator(parse_mount_size),
    PlainSerializer(lambda size: str(size) if isinstance(size, MemoryShare) else size),
    WithJsonSchema(
        {"anyOf": [*_SIZE_SCHEMA["anyOf"], {"type": "string", "pattern": r"^\s*\d+(\.\d+)?%\s*$"}]}
    ),
]
"""A tmpfs mount's size: bytes, or a share of the sandbox's memory such as ``"50%"``."""
