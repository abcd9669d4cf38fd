"""Reading apt's output: where a package install is, and how far along.

mmdebstrap (``mmdebstrap.bootstrap``) and the build containers of
``--base IMAGE`` (``container_build``) both run apt and stream its output;
``LineSplitter`` turns the byte stream into lines and ``AptProgress`` turns
lines into the stage, message and fraction a progress display shows.

Pure text processing: it must not run processes, talk to an engine, or emit
anything itself (callers pass what it returns to ``BuildRun.emit``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.images.models import BuildStage

__all__ = ["AptProgress", "LineSplitter"]


class LineSplitter:
    """Turns a byte stream into lines; ``\\r`` counts as a line end (progress bars)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes | bytearray) -> list[str]:
        self._buf += data
        parts = re.split(rb"\r\n|\r|\n", self._buf)
        self._buf = parts.pop()
        return [part.decode("utf-8", "replace").rstrip() for part in parts if part.strip()]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, b""
        text = rest.decode("utf-8", "replace").strip()
        return [text] if text else []


@dataclass
class AptProgress:
    """Reads mmdebstrap/apt output and says which stage it is in (and how far, when it can)."""

    stage: BuildStage = BuildStage.DOWNLOADING
    total: int = 0
    set_up: int = 0
    fetched: int = 0

    def read(self, line: str) -> tuple[BuildStage, str, float | None] | None:
        """``(stage, message, fraction)`` worth showing for ``line``, or ``None``."""
        text = line.strip()
        if text.startswith("I: "):
            info = text[3:]
            if "apt-get update" in info:
                self.stage = BuildStage.DOWNLOADING
                return self.stage, "updating the package lists", None
            if info.startswith("downloading packages"):
                self.stage = BuildStage.DOWNLOADING
                return self.stage, "downloading packages", None
            if info.startswith(("extracting archives", "installing essential")):
                self.stage = BuildStage.INSTALLING
                return self.stage, info.rstrip("."), None
            if info.startswith("installing remaining"):
                self.stage = BuildStage.INSTALLING
                return self.stage, "installing the recipe's packages", None
            if info.startswith("running --customize-hook"):
                self.stage = BuildStage.INSTALLING
                return self.stage, "customizing the rootfs (sandbox user, mount points)", None
            if info.startswith(("cleaning", "creating tarball")):
                self.stage = BuildStage.INSTALLING
                return self.stage, "writing the rootfs tar", None
            return None
        match = re.search(r"(\d+) newly installed", text)
        if match:
            self.total, self.set_up, self.fetched = int(match.group(1)), 0, 0
            return None
        if text.startswith("Get:"):
            self.stage = BuildStage.DOWNLOADING
            self.fetched += 1
            parts = text.split()
            package = parts[4] if len(parts) > 4 else text
            fraction = min(1.0, self.fetched / self.total) if self.total else None
            return self.stage, f"fetching {package}", fraction
        if text.startswith("Setting up "):
            self.stage = BuildStage.INSTALLING
            self.set_up += 1
            fraction = min(1.0, self.set_up / self.total) if self.total else None
            return self.stage, text.removesuffix(" ..."), fraction
        if text.startswith("Unpacking "):
            self.stage = BuildStage.INSTALLING
            return self.stage, text.split(" (")[0], None
        if text.startswith(("E: ", "W: ")):
            return self.stage, text, None
        return None
