"""Files of any size and whole folders, streamed into and out of a session's sandbox.

``Session`` inherits these from ``SessionTransfers``.  Small files keep the
one-frame fast path of ``SessionCalls`` (about a millisecond); a file past
``FAST_FILE_BYTES``, or given as an async iterable of chunks, streams
through the guest's ``transfer`` extension in flow-controlled chunks, so
neither this process nor the guest holds more than a window of it; only
``session.file_size_limit`` caps it.  Folders travel as tar streams: made
here from a local folder for ``put_dir``, unpacked here by
``local_archive.unpack_tar`` (which trusts nothing the sandbox sent) for
``get_dir``.

Must not: hold a file or an archive whole (``read_file`` returns bytes by
its nature; ``read_file_stream`` does not), or touch a host path but the
ones the caller named.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from orchestrator.errors import FileTooLarge
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client import transfers
from orchestrator.local_archive import DirCopy, local_tar, unpack_tar
from orchestrator.session_calls import SessionCalls

__all__ = ["FAST_FILE_BYTES", "SessionTransfers"]

FAST_FILE_BYTES = 8 << 20
"""Files up to this size travel in one frame; larger ones stream."""
_CHUNK = 1 << 20


async def _slices(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        yield bytes(view[start : start + _CHUNK])


class SessionTransfers(SessionCalls):
    """Streamed file and folder transfers (mixed into ``Session``)."""

    def _transfer_fields(self, timeout: float | None, limit: int) -> dict[str, Any]:
        settings = self._config.session
        return {
            "timeout": settings.exec_timeout if timeout is None else timeout,
            "grace": settings.kill_grace,
            "limit": limit,
        }

    # -- one file ---------------------------------------------------------------------

    async def write_file(
        self,
        path: str,
        data: bytes | str | AsyncIterable[bytes],
        *,
        mode: int | None = None,
        parents: bool = True,
        overwrite: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Write atomically (temp file + rename), creating parent directories by default.

        ``data`` is the file's bytes, text (UTF-8), or an async iterable of chunks,
        streamed as they come: a file of any size up to ``session.file_size_limit``.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        limit = self._config.session.file_size_limit
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            if len(payload) > limit:
                raise FileTooLarge(
                    f"refusing to write {len(payload)} bytes to {path}: over the {limit}-byte "
                    "file size limit (session.file_size_limit)",
                    details={"path": path, "size": len(payload), "limit": limit},
                )
            if len(payload) <= FAST_FILE_BYTES:
                await super().write_file(
                    path, payload, mode=mode, parents=parents, overwrite=overwrite
                )
                return
            source: AsyncIterable[bytes] = _slices(payload)
        else:
            source = data
        request = rq.TransferWriteRequest(
            path=path,
            mode=mode,
            parents=parents,
            overwrite=overwrite,
            **self._transfer_fields(timeout, limit),
        )
        await transfers.send(self.client, request, source)

    async def read_file(
        self,
        path: str,
        *,
        offset: int = 0,
        length: int | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """The file's bytes; ``FileTooLarge`` past ``session.file_size_limit`` (or
        ``max_bytes``): read it in parts (offset, length) or with ``read_file_stream``."""
        limit = min(max_bytes or self._config.session.file_size_limit, self._limit())
        try:
            return await super().read_file(
                path, offset=offset, length=length, max_bytes=min(limit, FAST_FILE_BYTES)
            )
        except FileTooLarge as exc:
            size = int(exc.details.get("size") or 0)
            wanted = max(0, size - offset) if length is None else min(length, size - offset)
            if wanted > limit:
                raise FileTooLarge(
                    f"{path} is {size} bytes, over the {limit}-byte limit of one read "
                    "(session.file_size_limit); read it in parts (offset/length), or stream it "
                    "with read_file_stream",
                    details={"path": path, "size": size, "limit": limit},
                ) from None
        data = bytearray()
        async with self.read_file_stream(
            path, offset=offset, length=length, timeout=timeout
        ) as chunks:
            async for chunk in chunks:
                data += chunk
        return bytes(data)

    @property
    def file_size_limit(self) -> int:
        """The largest file one call may read or write (``session.file_size_limit``)."""
        return int(self._config.session.file_size_limit)

    def _limit(self) -> int:
        return self.file_size_limit

    @asynccontextmanager
    async def read_file_stream(
        self,
        path: str,
        *,
        offset: int = 0,
        length: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The file's bytes chunk by chunk, however large: ``async for chunk in chunks``.

        A refusal (no such file, outside the allowed roots) is raised once the
        chunks are read: iterate them to the end.
        """
        request = rq.TransferReadRequest(
            path=path, offset=offset, length=length, **self._transfer_fields(timeout, self._limit())
        )
        async with transfers.receive(self.client, request) as stream:

            async def chunks() -> AsyncIterator[bytes]:
                async for chunk in stream:
                    yield chunk
                await stream.verdict()

            yield chunks()

    # -- folders ------------------------------------------------------------------------

    def _dir_limit(self) -> int:
        return int(self._config.session.dir_transfer_limit)

    async def put_dir_archive(
        self, remote: str, archive: AsyncIterable[bytes], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Unpack the tar stream ``archive`` into the folder ``remote`` (made if missing).

        Entries may not leave the folder (absolute names, ``..``, writing through a
        symlink, hard links out) nor be devices; ``session.dir_transfer_limit`` caps
        the bytes.  Returns ``entries`` and ``bytes`` unpacked.
        """
        request = rq.DirPutRequest(path=remote, **self._transfer_fields(timeout, self._dir_limit()))
        return await transfers.send(self.client, request, archive)

    @asynccontextmanager
    async def get_dir_archive(
        self, remote: str, *, timeout: float | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The folder ``remote`` as a tar stream (symlinks as links), chunk by chunk.

        The archive comes from inside the sandbox: unpack it with care
        (``get_dir`` does).
        """
        request = rq.DirGetRequest(path=remote, **self._transfer_fields(timeout, self._dir_limit()))
        async with transfers.receive(self.client, request) as stream:

            async def chunks() -> AsyncIterator[bytes]:
                async for chunk in stream:
                    yield chunk
                await stream.verdict()

            yield chunks()

    async def put_dir(
        self, local: str | Path, remote: str, *, timeout: float | None = None
    ) -> DirCopy:
        """Copy the local folder ``local`` into the sandbox folder ``remote`` (made if
        missing; what is there stays unless replaced), as one tar stream."""
        async with local_tar(Path(local)) as archive:
            done = await self.put_dir_archive(remote, archive, timeout=timeout)
        return DirCopy(entries=int(done.get("entries", 0)), bytes=int(done.get("bytes", 0)))

    async def get_dir(
        self, remote: str, local: str | Path, *, timeout: float | None = None
    ) -> DirCopy:
        """Copy the sandbox folder ``remote`` into the local folder ``local`` (made if missing).

        Nothing the sandbox sends can write outside ``local``: entries that would
        (absolute names, ``..``, links out, devices) are skipped and listed in the
        result's ``skipped``, beside what the sandbox could not send (unreadable
        files, FIFOs); ``session.dir_transfer_limit`` caps the bytes.
        """
        request = rq.DirGetRequest(path=remote, **self._transfer_fields(timeout, self._dir_limit()))
        async with transfers.receive(self.client, request) as stream:
            copied = await unpack_tar(stream, Path(local), limit=self._dir_limit())
            sent = await stream.verdict()
        left_out = sent.get("skipped")
        for name in left_out if isinstance(left_out, list) else []:
            if len(copied.skipped) < 100:
                copied.skipped.append(f"{name}: not sent (unreadable, or a device, FIFO or socket)")
        return copied
