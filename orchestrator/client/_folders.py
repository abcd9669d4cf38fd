"""Whole folders to and from a session, as tar streams, for the async ``Client``.

The archive is made and unpacked by ``orchestrator.tar_stream``, the code the
local API and ``SbxClient`` use, so a folder from the sandbox is unpacked
trusting nothing (absolute names, ``..``, links out and devices are skipped
and listed).  That code blocks (it reads and writes the disk), so it runs in
a worker thread through anyio, and the bytes cross between the thread and
the event loop a chunk at a time: neither side holds the folder whole, in
asyncio and in trio alike.
"""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx

from orchestrator.api.client import ApiClientError, api_error, unreachable
from orchestrator.api.client import _operations as ops
from orchestrator.tar_stream import DirCopy, PiecesReader, iter_tar, unpack

__all__ = ["get_dir", "put_dir"]

_TAR = {"Content-Type": "application/x-tar"}


async def put_dir(
    http: httpx.AsyncClient, url: str, session_id: str, local: str | Path, remote: str
) -> dict[str, Any]:
    """Copy the local folder ``local`` into ``remote`` in the sandbox (made if missing);
    the server's answer (``entries``, ``bytes``)."""
    folder = Path(local)
    if not await anyio.to_thread.run_sync(folder.is_dir):
        raise ApiClientError(0, "invalid_request", f"{folder} is not a local folder")
    target = ops.session_path(session_id, "dirs")
    try:
        response = await http.put(
            target, params={"path": remote}, content=_chunks_of(iter_tar(folder)), headers=_TAR
        )
    except httpx.TransportError as exc:
        raise unreachable(url, exc) from None
    if response.status_code >= 400:
        raise api_error(response.status_code, response.content, response.reason_phrase)
    answer: dict[str, Any] = response.json()
    return answer


async def get_dir(
    http: httpx.AsyncClient, url: str, session_id: str, remote: str, local: str | Path
) -> DirCopy:
    """Copy the sandbox folder ``remote`` into the local folder ``local``; what was copied,
    and what was refused (``skipped``)."""
    target = ops.session_path(session_id, "dirs")
    outcome = DirCopy()
    try:
        async with http.stream("GET", target, params={"path": remote}) as response:
            if response.status_code >= 400:
                raise api_error(response.status_code, await response.aread())
            pieces = response.aiter_bytes()
            reader = PiecesReader(iter(lambda: anyio.from_thread.run(_next_or_empty, pieces), b""))
            try:
                await anyio.to_thread.run_sync(unpack, reader, Path(local), outcome)
            except tarfile.TarError as exc:
                raise ApiClientError(
                    0, "invalid_archive", f"the folder's archive is not a valid tar stream: {exc}"
                ) from None
    except httpx.TransportError as exc:
        raise unreachable(url, exc) from None
    return outcome


async def _chunks_of(blocking: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking generator's chunks, each made in a worker thread."""
    while True:
        chunk = await anyio.to_thread.run_sync(next, blocking, None)
        if chunk is None:
            return
        yield chunk


async def _next_or_empty(pieces: AsyncIterator[bytes]) -> bytes:
    try:
        return await anext(pieces)
    except StopAsyncIteration:
        return b""
