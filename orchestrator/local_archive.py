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

Both sides run in worker threads (``tar_stream``), a chunk at a time, so a
folder of any size costs a chunk of memory.  Must not: write outside the
destination, follow a link while writing, or hold an archive whole.
"""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from orchestrator.errors import InputTooLarge, InvalidInput
from orchestrator.tar_stream import DirCopy, iter_tar, unpack

__all__ = ["DirCopy", "local_tar", "unpack_tar"]

_CHUNK = 256 << 10


# -- making an archive of a local folder ----------------------------------------------


@asynccontextmanager
async def local_tar(folder: Path) -> AsyncIterator[AsyncIterable[bytes]]:
    """The local ``folder`` as a tar stream (symlinks kept as links), made as it is read."""
    if not await trio.Path(folder).is_dir():
        raise InvalidInput(
            f"{folder} is not a folder on this machine; pass an existing local folder"
        )
    made = iter_tar(folder)

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await trio.to_thread.run_sync(next, made, None)
            except OSError as exc:
                raise InvalidInput(
                    f"cannot read {folder} to copy it: {exc}; check the folder's permissions"
                ) from None
            if chunk is None:
                return
            yield chunk

    try:
        yield chunks()
    finally:
        made.close()


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


async def unpack_tar(chunks: AsyncIterable[bytes], dest: Path, *, limit: int) -> DirCopy:
    """Unpack the tar stream ``chunks`` into the local folder ``dest`` (made if missing).

    Unsafe entries are skipped and listed in the result; a malformed archive is
    ``InvalidInput``; past ``limit`` bytes, ``InputTooLarge``.
    """
    outcome = DirCopy()
    reader = _ChunkReader(aiter(chunks), limit)
    try:
        await trio.to_thread.run_sync(unpack, reader, dest, outcome)
    except tarfile.TarError as exc:
        raise InvalidInput(
            f"the archive from the sandbox is not a valid tar stream ({exc}); nothing past "
            f"the bad entry was unpacked into {dest}"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"cannot unpack into {dest}: {exc}; check the folder") from None
    return outcome
