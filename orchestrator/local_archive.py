"""Folders on this machine as tar streams, and tar streams unpacked safely into folders.

``put_dir`` streams a local folder into a sandbox as a tar archive made here;
``get_dir`` unpacks the archive a sandbox sends back.  That archive is made
inside the sandbox, where hostile code may have forged it, so unpacking
trusts nothing in it: tarfile's ``data`` filter refuses absolute names,
``..``, links that leave the folder (and anything written through such a
link), devices and FIFOs, and drops owners and special mode bits; what it
refuses is skipped and reported, never written.  Sizes are counted as
entries arrive, and pax or long-name headers past a small bound are refused
before they are read, so memory stays bounded whatever the archive says.

Both sides run tarfile in a worker thread, fed chunk by chunk from trio (at
most a few chunks in flight), so a folder of any size costs a window of
memory.  Must not: write outside the destination, follow a link while
writing, or hold an archive whole.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from orchestrator.errors import InputTooLarge, InvalidInput

__all__ = ["DirCopy", "local_tar", "unpack_tar"]

_CHUNK = 256 << 10
MAX_META_HEADER = 1 << 20
"""The largest pax or GNU long-name header accepted (it would be held in memory)."""


@dataclass
class DirCopy:
    """What a folder copy moved: entries written, bytes of file data, entries refused."""

    entries: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    """Entries not unpacked because they were unsafe, with why (first 100)."""


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


# -- making an archive of a local folder ----------------------------------------------


class _ChannelWriter:
    """A file object for tarfile's stream mode whose writes go to trio, in big chunks."""

    def __init__(self, send: trio.MemorySendChannel[bytes]) -> None:
        self._send = send
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            trio.from_thread.run(self._send.send, chunk)


def _write_tar(folder: Path, writer: _ChannelWriter) -> None:
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for name in sorted(os.listdir(folder)):
            tar.add(folder / name, arcname=name, recursive=True)
    writer.flush()


@asynccontextmanager
async def local_tar(folder: Path) -> AsyncIterator[AsyncIterable[bytes]]:
    """The local ``folder`` as a tar stream (symlinks kept as links), made as it is read."""
    if not await trio.Path(folder).is_dir():
        raise InvalidInput(
            f"{folder} is not a folder on this machine; pass an existing local folder"
        )
    send, receive = trio.open_memory_channel[bytes](2)

    async def produce() -> None:
        async with send:
            await trio.to_thread.run_sync(_write_tar, folder, _ChannelWriter(send))

    async with trio.open_nursery() as nursery, receive:
        nursery.start_soon(produce)
        yield receive
        nursery.cancel_scope.cancel()


# -- unpacking an archive from a sandbox ------------------------------------------------


class _ChunkReader:
    """A file object for tarfile's stream mode that pulls chunks from trio as it reads."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._pending = b""
        self._done = False
        self.total = 0
        self.limit = limit

    async def _next(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def read(self, size: int = -1) -> bytes:
        while not self._pending and not self._done:
            chunk = trio.from_thread.run(self._next)
            if chunk is None:
                self._done = True
                break
            self.total += len(chunk)
            if self.total > self.limit:
                raise InputTooLarge(
                    f"the folder's archive passed the {self.limit}-byte limit of one copy; "
                    "copy less at once, or raise session.dir_transfer_limit",
                    limit=self.limit,
                    key="session.dir_transfer_limit",
                )
            self._pending = chunk
        if size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data


def _unpack(reader: _ChunkReader, dest: Path, outcome: DirCopy) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=reader, mode="r|", tarinfo=_BoundedTarInfo) as tar:  # type: ignore[call-overload]
        for member in tar:
            try:
                safe = tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                if len(outcome.skipped) < 100:
                    outcome.skipped.append(f"{member.name}: {exc}")
                continue
            if safe.isreg():
                outcome.bytes += safe.size
            tar.extract(safe, dest, set_attrs=True, filter="fully_trusted")
            outcome.entries += 1
        # Read to the end, so the sender's verdict is not held back by a full window.
        while reader.read(_CHUNK):
            pass


async def unpack_tar(chunks: AsyncIterable[bytes], dest: Path, *, limit: int) -> DirCopy:
    """Unpack the tar stream ``chunks`` into the local folder ``dest`` (made if missing).

    Unsafe entries are skipped and listed in the result; a malformed archive is
    ``InvalidInput``; past ``limit`` bytes, ``InputTooLarge``.
    """
    outcome = DirCopy()
    reader = _ChunkReader(aiter(chunks), limit)
    try:
        await trio.to_thread.run_sync(_unpack, reader, dest, outcome)
    except tarfile.TarError as exc:
        raise InvalidInput(
            f"the archive from the sandbox is not a valid tar stream ({exc}); nothing past "
            f"the bad entry was unpacked into {dest}"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"cannot unpack into {dest}: {exc}; check the folder") from None
    return outcome
