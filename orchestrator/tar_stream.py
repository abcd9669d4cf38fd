"""Tar streams of folders, made and unpacked chunk by chunk, trusting nothing unpacked.

Shared by the Python API (``local_archive``, which runs these in worker
threads) and the HTTP client (blocking).  ``iter_tar`` makes a folder's
archive as a generator of chunks, a file's data read a chunk at a time, so
a folder of any size costs one chunk of memory.  ``unpack`` reads an archive
that may come from hostile code in a sandbox: tarfile's ``data`` filter
refuses absolute names, ``..``, links that leave the destination (and
anything written through such a link), devices and FIFOs, and drops owners
and special mode bits; refused entries are skipped and listed, never
written; pax and long-name headers past a small bound are refused before
they are read, and so is an archive of more than ``MAX_ENTRIES`` entries.

Must not: write outside the destination, follow a link while writing, or
hold an archive or a file whole.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "MAX_ENTRIES",
    "MAX_META_HEADER",
    "DirCopy",
    "PiecesReader",
    "Readable",
    "iter_tar",
    "unpack",
]

CHUNK = 256 << 10
MAX_ENTRIES = 1_000_000
"""The most entries one archive may unpack: tiny entries cost inodes, not bytes."""
MAX_META_HEADER = 1 << 20
"""The largest pax or GNU long-name header accepted (it would be held in memory)."""
_BLOCK = tarfile.BLOCKSIZE


@dataclass
class DirCopy:
    """What a folder copy moved: entries written, bytes of file data, entries refused."""

    entries: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    """Entries not unpacked because they were unsafe, with why (the first 100)."""


_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class Readable(Protocol):
    """What ``unpack`` reads an archive from: a file, a socket's body, a stream of chunks."""

    def read(self, size: int = -1, /) -> bytes: ...


class PiecesReader:
    """Chunks read as a file, for tarfile's stream mode (a response body's pieces)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if not self._pending:
            self._pending = next(self._pieces, b"")
        if size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses pax and long-name headers over ``MAX_META_HEADER`` before reading them."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        meta = (
            tarfile.XHDTYPE,
            tarfile.XGLTYPE,
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
        )
        if self.type in meta and self.size > MAX_META_HEADER:
            raise tarfile.HeaderError(f"a {self.size}-byte pax or long-name header")
        result: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return result


def iter_tar(folder: Path) -> Generator[bytes, None, None]:
    """The contents of ``folder`` as a PAX tar stream, in chunks; symlinks stay links.

    Devices, FIFOs and sockets are left out; hard links are sent as files.
    """
    pending = bytearray()
    stack = [(folder, "")]
    while stack:
        current, prefix = stack.pop()
        for name in sorted(os.listdir(current)):
            path = current / name
            info = os.lstat(path)
            member = tarfile.TarInfo(prefix + name)
            member.mode = stat.S_IMODE(info.st_mode)
            member.mtime = int(info.st_mtime)
            if stat.S_ISDIR(info.st_mode):
                member.type = tarfile.DIRTYPE
                stack.append((path, prefix + name + "/"))
            elif stat.S_ISLNK(info.st_mode):
                member.type = tarfile.SYMTYPE
                member.linkname = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                member.size = info.st_size
            else:
                continue
            pending += member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            if member.isreg():
                sent = 0
                with open(path, "rb") as source:
                    while sent < member.size:
                        chunk = source.read(min(CHUNK, member.size - sent))
                        if not chunk:
                            raise OSError(f"{path} shrank while it was being copied")
                        pending += chunk
                        sent += len(chunk)
                        if len(pending) >= CHUNK:
                            yield bytes(pending)
                            pending.clear()
                pending += b"\0" * (-member.size % _BLOCK)
            if len(pending) >= CHUNK:
                yield bytes(pending)
                pending.clear()
    pending += b"\0" * (2 * _BLOCK)
    yield bytes(pending)


def unpack(source: Readable, dest: Path, outcome: DirCopy) -> None:
    """Unpack the tar stream read from ``source`` into ``dest`` (made if missing).

    Blocking; ``tarfile.TarError`` for a malformed archive.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=source, mode="r|", tarinfo=_BoundedTarInfo) as tar:  # type: ignore[call-overload]
        for member in tar:
            if outcome.entries >= MAX_ENTRIES:
                raise tarfile.ReadError(
                    f"more than {MAX_ENTRIES} entries; copy the folder in parts"
                )
            try:
                safe = tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                _skip(outcome, member.name, str(exc))
                continue
            try:
                tar.extract(safe, dest, set_attrs=True, filter="fully_trusted")
            except (KeyError, tarfile.StreamError, tarfile.ExtractError) as exc:
                _skip(outcome, member.name, f"cannot be unpacked ({exc})")
                continue
            if safe.isreg():
                outcome.bytes += safe.size
            outcome.entries += 1
        # Read to the end, so the sender is not left waiting with a full window.
        while source.read(CHUNK):
            pass


def _skip(outcome: DirCopy, name: str, why: str) -> None:
    if len(outcome.skipped) < 100:
        outcome.skipped.append(f"{name}: {why}")
