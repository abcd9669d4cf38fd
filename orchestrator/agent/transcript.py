"""An agent run's directory: the transcript as JSONL, and the images it produced.

Every message, tool call, tool result and timing goes in ``transcript.jsonl``
as it happens (one JSON object per line, flushed), so a run that fails half
way keeps everything up to the failure.  Images in tool results (screenshots)
are written as PNG files beside it and referenced from the transcript
instead of being inlined as base64; ``inline_images`` puts them back, and
``read_transcript`` reads the events back, for a resumed run.  A run
directory opened again (to resume) is appended to.

Must not: rewrite what was written (a transcript only grows), or read a file
outside its run directory.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["RunDirectory", "inline_images", "read_transcript"]

_MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


class RunDirectory:
    def __init__(self, root: Path) -> None:
        self.path = root
        self.path.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = (self.path / "transcript.jsonl").open("a", encoding="utf-8")
        self._images = max(
            (int(p.name[:4]) for p in self.path.glob("[0-9][0-9][0-9][0-9]-*")), default=0
        )
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


def read_transcript(run_dir: Path) -> list[dict[str, Any]]:
    """The events of a run directory's transcript, in order; a line cut short by a crash
    (the last one) is left out."""
    path = run_dir / "transcript.jsonl"
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def inline_images(blocks: list[dict[str, Any]], run_dir: Path) -> list[dict[str, Any]]:
    """Transcript content with each image file read back and inlined as base64 again."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            out.append({**block, "content": inline_images(block["content"], run_dir)})
        elif block.get("type") == "image" and "file" in block:
            name = str(block["file"])
            if Path(name).name != name or name.startswith("."):
                raise ValueError(f"the transcript names an image outside its directory: {name!r}")
            data = (run_dir / name).read_bytes()
            media_type = _MEDIA_TYPES.get(name.rsplit(".", 1)[-1], "image/png")
            source = {
                "type": "base64",
                "media_type": media_type,
                "data": base64.b64encode(data).decode("ascii"),
            }
            out.append({"type": "image", "source": source})
        else:
            out.append(block)
    return out
