"""Layer tars on disk: what one is (``LayerFile``), and writing a small one from memory.

A layer is an uncompressed tar whose ``diff_id`` (sha256 of its bytes) names
it to the engine.  ``write_tree_layer`` writes a deterministic layer from
in-memory files (the guest), ``file_layer`` describes a tar someone else
wrote (mmdebstrap's rootfs), and ``HashingWriter`` hashes a layer while it is
written, so no layer is read twice.  The delta layers (``layer_delta``) and
the load archive (``image_archive``) build on these.

Everything here is synchronous and CPU/IO bound: callers run it with
``trio.to_thread.run_sync``.  It must not talk to an engine or spawn
processes.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CHUNK_SIZE",
    "HashingWriter",
    "LayerFile",
    "file_layer",
    "normalize",
    "parent_path",
    "write_tree_layer",
]

CHUNK_SIZE = 1 << 20
"""Bytes read at a time from a layer tar (hashing, copying, sending)."""


@dataclass(frozen=True)
class LayerFile:
    """A layer tar on disk and its ``diff_id`` (sha256 of the uncompressed tar)."""

    path: Path
    diff_id: str
    size: int


def normalize(name: str) -> str:
    """``./usr/bin/`` → ``usr/bin``; the root directory is ``""``."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def parent_path(path: str) -> str:
    """``usr/bin`` → ``usr``; the parent of a top-level entry is the root, ``""``."""
    return posixpath.dirname(path)


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        super().__init__()
        self._target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._target.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)


def write_tree_layer(
    out: Path,
    files: Mapping[str, bytes],
    *,
    mtime: int,
    file_mode: int = 0o644,
    dir_mode: int = 0o755,
    uid: int = 0,
    gid: int = 0,
) -> LayerFile:
    """A layer holding ``files`` (absolute or relative paths → content) and all their parents.

    Deterministic for the same input (sorted, fixed mtime, no owner names),
    so an unchanged guest gives the same ``diff_id`` and the engine keeps the
    layer it already has.
    """
    contents = {normalize(name): data for name, data in files.items()}
    dirs: set[str] = set()
    for name in contents:
        parent = parent_path(name)
        while parent:
            dirs.add(parent)
            parent = parent_path(parent)
    with out.open("wb") as raw:
        sink = HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(dirs | set(contents)):
                info = tarfile.TarInfo(name)
                info.mtime = mtime
                info.uid, info.gid = uid, gid
                info.uname = info.gname = ""
                if name in dirs:
                    info.type = tarfile.DIRTYPE
                    info.mode = dir_mode
                    tar.addfile(info)
                else:
                    data = contents[name]
                    info.mode = file_mode
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return LayerFile(path=out, diff_id="sha256:" + sink.digest.hexdigest(), size=sink.size)


def file_layer(path: Path) -> LayerFile:
    """Describe an existing layer tar (one read to hash it)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return LayerFile(path=path, diff_id="sha256:" + digest.hexdigest(), size=size)
