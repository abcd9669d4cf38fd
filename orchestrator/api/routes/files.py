"""``/v1/sessions/{id}/files``: download, upload, remove and list files in a session's sandbox.

Paths are checked inside the sandbox by the guest (allowed roots, no
traversal); this module must not join, resolve or touch host paths.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from orchestrator.api.dependencies import OwnedSession
from orchestrator.api.models import FileEntry, FileListing

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
    data = await session.read_file(path)
    return Response(content=data, media_type="application/octet-stream")


@router.put("/sessions/{session_id}/files")
async def upload(
    session: OwnedSession,
    path: PathQuery,
    request: Request,
    mode: Annotated[int | None, Query(ge=0, le=0o7777)] = None,
) -> dict[str, Any]:
    """Write the request body to ``path`` atomically (parents are created)."""
    data = await request.body()
    await session.write_file(path, data, mode=mode)
    return {"path": path, "size": len(data)}


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
