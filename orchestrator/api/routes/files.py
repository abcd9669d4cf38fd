"""``/v1/sessions/{id}/files`` and ``/dirs``: files and whole folders in a session's sandbox.

Files of any size and folders (as tar streams) travel streamed both ways:
an upload is fed to the sandbox as its body arrives, a download is sent as
the sandbox produces it, so the server holds a few chunks at most (these
bodies are capped by ``session.file_size_limit`` and
``session.dir_transfer_limit``, not ``api.max_body``).  Paths are checked
inside the sandbox by the guest (allowed roots, no traversal); this module
must not join, resolve or touch host paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import trio
from fastapi import APIRouter, Query, Request, Response

from orchestrator.api.byte_stream import ByteStream
from orchestrator.api.dependencies import OwnedSession
from orchestrator.api.models import FileEntry, FileListing
from orchestrator.errors import FileTooLarge, GuestNotADirectory
from orchestrator.session_transfers import FAST_FILE_BYTES

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["files"])

PathQuery = Annotated[
    str, Query(min_length=1, max_length=4096, description="Absolute path in the sandbox.")
]


@router.get(
    "/sessions/{session_id}/files",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download(session: OwnedSession, path: PathQuery) -> Response:
    """The file's bytes; a large file is streamed as the sandbox reads it."""
    info = await session.stat(path)
    if info.type != "file" or info.size <= FAST_FILE_BYTES:
        data = await session.read_file(path)
        return Response(content=data, media_type="application/octet-stream")

    async def produce(send: trio.MemorySendChannel[bytes]) -> None:
        async with session.read_file_stream(path) as chunks:
            async for chunk in chunks:
                await send.send(chunk)

    return ByteStream(produce, "application/octet-stream", length=info.size)


async def _counted(request: Request, seen: list[int]) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        seen[0] += len(chunk)
        yield chunk


@router.put("/sessions/{session_id}/files")
async def upload(
    session: OwnedSession,
    path: PathQuery,
    request: Request,
    mode: Annotated[int | None, Query(ge=0, le=0o7777)] = None,
) -> dict[str, Any]:
    """Write the request body to ``path`` atomically (parents are created); a large body
    is streamed into the sandbox as it arrives."""
    declared = request.headers.get("content-length", "")
    limit = session.file_size_limit
    if declared.isdigit() and int(declared) > limit:
        raise FileTooLarge(
            f"the body is {declared} bytes, over the {limit}-byte limit of one file "
            "(session.file_size_limit); send less, or raise the limit",
            details={"path": path, "size": int(declared), "limit": limit},
        )
    if declared.isdigit() and int(declared) <= FAST_FILE_BYTES:
        data = await request.body()
        await session.write_file(path, data, mode=mode)
        return {"path": path, "size": len(data)}
    seen = [0]
    await session.write_file(path, _counted(request, seen), mode=mode)
    return {"path": path, "size": seen[0]}


@router.get(
    "/sessions/{session_id}/dirs",
    responses={200: {"content": {"application/x-tar": {}}}},
)
async def download_dir(session: OwnedSession, path: PathQuery) -> Response:
    """The folder as a tar stream (symlinks as links), sent as the sandbox makes it.

    It is made inside the sandbox: unpack it with care (``sbx cp -r`` does).
    """
    info = await session.stat(path)
    if info.type != "directory":
        raise GuestNotADirectory(f"{path} is not a folder; download a file with GET .../files")

    async def produce(send: trio.MemorySendChannel[bytes]) -> None:
        async with session.get_dir_archive(path) as chunks:
            async for chunk in chunks:
                await send.send(chunk)

    return ByteStream(produce, "application/x-tar")


@router.put("/sessions/{session_id}/dirs")
async def upload_dir(session: OwnedSession, path: PathQuery, request: Request) -> dict[str, Any]:
    """Unpack the tar body into the folder ``path`` (made if missing), as it arrives.

    Entries may not leave the folder (absolute names, ``..``, writing through a
    symlink, hard links out) nor be devices.
    """
    done = await session.put_dir_archive(path, request.stream())
    return {"path": path, "entries": done.get("entries", 0), "bytes": done.get("bytes", 0)}


@router.delete("/sessions/{session_id}/files", status_code=204)
async def remove_file(session: OwnedSession, path: PathQuery, recursive: bool = False) -> Response:
    await session.remove(path, recursive=recursive)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/files/list", response_model=FileListing)
async def list_files(
    session: OwnedSession,
    path: PathQuery,
    depth: Annotated[int, Query(ge=1, le=16)] = 1,
) -> FileListing:
    entries = await session.list_files(path, depth=depth)
    return FileListing(
        path=path,
        entries=[FileEntry(**entry.model_dump(exclude={"uid", "gid"})) for entry in entries],
    )
