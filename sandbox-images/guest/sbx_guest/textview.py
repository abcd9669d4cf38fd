"""Reading for the editor: ``view`` of a file or a directory, and the read every edit starts with.

A file is read whole, only if it is a regular file under the size cap
(a FIFO or a device would block the guest's thread or never end), and shown
as numbered lines within an optional range and byte budget; a directory is
shown as a tree two levels deep, hidden entries left out, capped in entries
and bytes so the answer fits in one frame.  Must not: write, lock, or follow
a path the store did not resolve.
"""

from __future__ import annotations

import os
import stat
from typing import List, Optional, Tuple

from . import protocol
from .errors import CallError, os_error
from .files import read_directory
from .textdoc import Document, display, split_lines

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .textstores import FileStore, MemoryStore

MAX_TREE_ENTRIES = 5000
MAX_TREE_BYTES = 256 << 10
"""A listing's share of the answer frame (whose header is capped at 1 MiB)."""


def view_path(
    store: "FileStore | MemoryStore", args: dict, max_file_default: int
) -> Tuple[dict, bytes]:
    """A file's lines (in ``args["range"]``, within ``max_bytes``), or a directory's tree."""
    path = args.get("path")
    real = store.real(path)
    shown = store.shown(real, str(path))
    info = stat_or_none(real, shown)
    if info is None:
        raise CallError(protocol.E_NOT_FOUND, "%s does not exist" % shown, {"path": shown})
    if stat.S_ISDIR(info.st_mode):
        entries, truncated = directory_tree(real, shown, int(args.get("depth") or 2))
        return {
            "type": "directory",
            "path": shown,
            "size": info.st_size,
            "entries": entries,
            "truncated": truncated,
        }, b""
    max_file = int(args.get("max_file") or max_file_default)
    raw, info = read_file(real, shown, max_file)
    doc = Document(raw, shown)
    lines = split_lines(doc.work)
    total = len(lines)
    start, end = 1, total
    wanted = args.get("range")
    if wanted is not None and total:
        start, end = check_range(wanted, total, bool(args.get("lenient")))
    budget = int(args.get("max_bytes") or 0)
    shown_end = end
    if budget:
        used = 0
        for number in range(start, end + 1):
            used += len(lines[number - 1]) + 8
            if used > budget and number > start:
                shown_end = number - 1
                break
    picked = lines[start - 1 : shown_end] if total else []
    return {
        "type": "file",
        "path": shown,
        "size": info.st_size,
        "lines": total,
        "start": start,
        "end": shown_end,
        "requested_end": end,
        "style": doc.style,
        "invalid": doc.invalid,
        "final_newline": doc.work.endswith("\n") or not doc.work,
    }, display(picked)


def stat_or_none(real: str, shown: str) -> Optional[os.stat_result]:
    try:
        return os.stat(real)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(exc, shown, "open") from None


def read_file(real: str, shown: str, max_file: int) -> Tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``real`` (``shown`` in messages), if under ``max_file``."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CallError(
            protocol.E_NOT_FOUND, "%s does not exist" % shown, {"path": shown}
        ) from None
    except OSError as exc:
        raise os_error(exc, shown, "read") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise CallError(protocol.E_IS_DIRECTORY, "%s is a directory" % shown, {"path": shown})
        if not stat.S_ISREG(info.st_mode):
            raise CallError(
                protocol.E_BINARY,
                "%s is not a regular file" % shown,
                {"path": shown, "reason": "special"},
            )
        if info.st_size > max_file:
            raise CallError(
                protocol.E_TOO_LARGE,
                "%s is %d bytes, over the %d-byte limit" % (shown, info.st_size, max_file),
                {"path": shown, "size": info.st_size, "limit": max_file},
            )
        os.set_blocking(fd, True)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def check_range(wanted: object, total: int, lenient: bool) -> Tuple[int, int]:
    if (
        not isinstance(wanted, list)
        or len(wanted) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in wanted)
    ):
        raise CallError(protocol.E_BAD_RANGE, "view_range must be two integers", {"which": "shape"})
    start, end = wanted
    if lenient:
        start = min(max(1, start), total)
        end = total if end == -1 or end > total else max(end, start)
        return start, end
    details = {"lines": total, "range": wanted}
    if start < 1 or start > total:
        raise CallError(protocol.E_BAD_RANGE, "start out of range", dict(details, which="start"))
    if end > total:
        raise CallError(protocol.E_BAD_RANGE, "end out of range", dict(details, which="end"))
    if end != -1 and end < start:
        raise CallError(protocol.E_BAD_RANGE, "end before start", dict(details, which="order"))
    return start, total if end == -1 else end


def directory_tree(real: str, shown: str, depth: int) -> Tuple[List[dict], bool]:
    """Entries up to ``depth`` levels deep, hidden ones (and their contents) skipped."""
    entries: List[dict] = []
    truncated = False
    budget = [MAX_TREE_BYTES]

    def walk(directory: str, prefix: str, level: int) -> None:
        nonlocal truncated
        try:
            items, more = read_directory(directory, MAX_TREE_ENTRIES)
        except OSError:
            return
        truncated = truncated or more
        for item in items:
            if item.name.startswith("."):
                continue
            if len(entries) >= MAX_TREE_ENTRIES or budget[0] <= 0:
                truncated = True
                return
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            budget[0] -= len(prefix) + len(item.name) + 64
            entries.append(
                {
                    "path": prefix + "/" + item.name,
                    "type": "directory" if is_dir else "file",
                    "size": info.st_size,
                    "depth": level,
                }
            )
            if is_dir and level < depth:
                walk(item.path, prefix + "/" + item.name, level + 1)

    walk(real, shown.rstrip("/") or "", 1)
    return entries, truncated
