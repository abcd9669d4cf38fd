"""What one configuration load reads, and what each of its layers gave.

Must not: import pydantic-settings (``sources`` does, only when needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ENV_DELIMITER", "ENV_PREFIX", "LoadRequest", "is_yaml"]

ENV_PREFIX = "SBX_"
ENV_DELIMITER = "__"


def is_yaml(path: Path) -> bool:
    return path.suffix.lower() in {".yaml", ".yml"}


@dataclass
class LoadRequest:
    """What one load reads: the file, the profile, the values given on top; and, once
    loaded, each layer's raw values (for ``origins``), highest first."""

    path: Path | None
    profile: str | None
    overrides: dict[str, Any]
    environment: bool = True
    """Read ``SBX_*`` (``sbx config validate FILE`` checks the file alone)."""
    layers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
