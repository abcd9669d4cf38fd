"""An agent run's directory: the transcript as JSONL, and the images it produced.

Every message, tool call, tool result and timing goes in ``transcript.jsonl``
as it happens (one JSON object per line, flushed), so a run that fails half
way keeps everything up to the failure.  Images in tool results (screenshots)
are written as PNG files beside it and referenced from the transcript
instead of being inlined as base64.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["RunDirectory"]


class RunDirectory:
    def __init__(self, root: Path) -> None:
        self.path = root
        self.path.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = (self.path / "transcript.jsonl").open("a", encoding="utf-8")
        self._images = 0
        self.started = time.monotonic()

    @classmethod
    def create(cls, parent: Path) -> RunDirectory:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return cls(parent / f"{stamp}-{secrets.token_hex(3)}")

    def record(self, kind: str, **fields: Any) -> None:
        entry = {
            "type": kind,
            "t": round(time.monotonic() - self.started, 4),
            "time": datetime.now(UTC).isoformat(),
            **fields,
        }
        self._file.write(json.dumps(entry, default=str) + "\n")
        self._file.flush()

    def save_image(self, data: bytes, label: str, media_type: str = "image/png") -> Path:
        self._images += 1
        extension = {
            "image/png": "png",
            "image/jpeg": "jpg",
            "image/gif": "gif",
            "image/webp": "webp",
        }.get(media_type, "bin")
        path = self.path / f"{self._images:04d}-{label}.{extension}"
        path.write_bytes(data)
        return path

    def externalize_images(self, blocks: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
        """Tool-result content with each base64 image saved to a file and replaced by its name."""
        out: list[dict[str, Any]] = []
        for block in blocks:
            kind = block.get("type")
            if kind == "tool_result" and isinstance(block.get("content"), list):
                inner = self.externalize_images(block["content"], block.get("tool_use_id", label))
                out.append({**block, "content": inner})
            elif kind == "image" and block.get("source", {}).get("type") == "base64":
                source = block["source"]
                path = self.save_image(
                    base64.b64decode(source["data"]), label, source.get("media_type", "image/png")
                )
                out.append({"type": "image", "file": path.name})
            else:
                out.append(block)
        return out

    def close(self) -> None:
        self._file.close()
