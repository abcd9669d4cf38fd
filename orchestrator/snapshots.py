"""Snapshots and forks: a session's filesystem kept as a local image, and started again.

A snapshot is the sandbox's root changes *and* the contents of its tmpfs
mounts (``/workspace``, ``/tmp``, ``/var/tmp``, the home directory), which a
plain ``docker commit`` misses.  ``take_snapshot``:

1. asks the guest to run ``snapshot_main.py archive`` as root (root's
   ``CAP_DAC_OVERRIDE`` reads files the sandbox's code made unreadable) with
   the bundle's own Python, so it works in images without Python or tar; the
   tar streams over the channel into a temporary file on this host (nothing
   is written in the sandbox, so a sandbox whose disk is full snapshots all
   the same);
2. hands it to the backend, which commits the root and adds the tar under a
   hidden directory of the image (``SNAPSHOT_FILES_ROOT/<id>``), labelled
   with the snapshot's id, parent image, session and time.

A fork is a session of that image: before it is ready, ``restore_snapshot``
has the guest copy the hidden directory into the fork's fresh tmpfs mounts
(again as root, owners and modes kept).  Each snapshot has a directory of its
own, so a snapshot of a fork never brings back files the fork deleted.

Not captured: processes and their memory (a fork starts with none running),
``/run`` and the guest's own runtime state, the memory store at
``/memories`` (it is shared, not the sandbox's), and the engine's settings
beyond the user and working directory.  Every step runs under
``session.snapshot_timeout``; failures are ``SnapshotError`` naming the fix.

Must not: import the session (it hands over what is needed), or leave the
temporary archive behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import structlog
import trio
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.backends.base import (
    LABEL_SNAPSHOT,
    LABEL_SNAPSHOT_CLIENT,
    LABEL_SNAPSHOT_CREATED,
    LABEL_SNAPSHOT_FILES,
    LABEL_SNAPSHOT_PARENT,
    LABEL_SNAPSHOT_SESSION,
    SNAPSHOT_FILES_ROOT,
    ImageDefaults,
    SandboxBackend,
    SnapshotBackend,
    SnapshotCommit,
)
from orchestrator.config import Config
from orchestrator.errors import EngineError, ImageNotFound, SnapshotError
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client.client import GuestClient
from orchestrator.images.guest_bundle import BUNDLE_DIR, guest_command
from orchestrator.sandbox_spec import SandboxShape

__all__ = [
    "Snapshot",
    "check_fork_allowed",
    "data_mounts",
    "restore_snapshot",
    "snapshot_repository",
    "take_snapshot",
]

log = structlog.get_logger("orchestrator.snapshots")

_NOT_DATA = ("/run", "/dev/shm")
"""tmpfs mounts that hold runtime state, never data: not archived."""
_REPORT_CAP = 64 << 10


class Snapshot(BaseModel):
    """A session's filesystem as a local image; ``orch.session(image=snap)`` forks it."""

    model_config = ConfigDict(frozen=True)

    image: str = Field(description="The image's name, e.g. sbx-snapshot:1a2b3c4d5e6f.")
    image_id: str = Field(description="The engine's id of the image (sha256:...).")
    id: str = Field(description="The snapshot's own id (the image's tag).")
    parent_session: str
    parent_image: str
    created: float = Field(description="When it was taken, Unix seconds.")
    files: int = Field(default=0, description="Regular files archived from the mounts.")
    bytes: int = Field(default=0, description="Their bytes.")
    seconds: float = 0.0
    skipped: list[dict[str, str]] = Field(
        default_factory=list,
        description="Entries of the mounts not archived, with why (sockets, device nodes, "
        "files that vanished while being read); the first 50.",
    )
    skipped_count: int = 0

    def __str__(self) -> str:
        return self.image


def snapshot_repository(config: Config) -> str:
    """Where snapshot images are tagged: ``<images.prefix>snapshot``."""
    return f"{config.images.prefix}snapshot"


def data_mounts(tmpfs: Mapping[str, int] | tuple[tuple[str, int], ...]) -> list[str]:
    """The tmpfs mounts whose contents a snapshot keeps (not ``/run``)."""
    names = tmpfs.keys() if isinstance(tmpfs, Mapping) else [name for name, _ in tmpfs]
    return sorted(name for name in names if name not in _NOT_DATA)


def _snapshot_argv(*args: str) -> list[str]:
    """The bundle's Python running ``snapshot_main.py`` (not the image's)."""
    return [*guest_command()[:-1], str(BUNDLE_DIR / "guest" / "snapshot_main.py"), *args]


def check_fork_allowed(image: str, defaults: ImageDefaults, owner: str | None) -> None:
    """A snapshot made for one API token owner is not another's to fork (it holds their
    files): to them it does not exist."""
    client = defaults.snapshot_client
    if defaults.snapshot_files is not None and client and owner is not None and client != owner:
        raise ImageNotFound(image)


async def take_snapshot(
    backend: SandboxBackend,
    client: GuestClient,
    config: Config,
    sandbox_id: str,
    session_id: str,
    shape: SandboxShape,
    owner: str | None,
) -> Snapshot:
    """Keep the session's filesystem as an image (see the module), within
    ``session.snapshot_timeout``."""
    image, user, workdir, tmpfs = shape.image, shape.user, shape.workdir, shape.tmpfs
    if not isinstance(backend, SnapshotBackend):
        raise SnapshotError(
            f"the {backend.name} backend cannot keep a sandbox as an image; snapshots need "
            "engine.backend = 'docker'"
        )
    timeout = config.session.snapshot_timeout
    snap_id = secrets.token_hex(6)
    started = trio.current_time()
    mounts = data_mounts(tmpfs)
    tmp: str | None = None
    try:
        with trio.fail_after(timeout):
            tmp = await trio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="sbx-snapshot-"))
            path = os.path.join(tmp, "mounts.tar")
            limit = 2 * sum(size for name, size in tmpfs if name in mounts) + (64 << 20)
            summary = await _archive(client, path, snap_id, mounts, limit, timeout)
            created = time.time()
            labels = {
                LABEL_SNAPSHOT: snap_id,
                LABEL_SNAPSHOT_PARENT: image,
                LABEL_SNAPSHOT_SESSION: session_id,
                LABEL_SNAPSHOT_CREATED: str(int(created)),
                LABEL_SNAPSHOT_FILES: f"{SNAPSHOT_FILES_ROOT}/{snap_id}",
            }
            if owner is not None:
                labels[LABEL_SNAPSHOT_CLIENT] = owner
            repository = snapshot_repository(config)
            commit = SnapshotCommit(
                repository=repository,
                tag=snap_id,
                labels=labels,
                user="0:0" if user == "root" else user,
                workdir=workdir,
                files_archive=path,
            )
            left = max(1.0, timeout - (trio.current_time() - started))
            image_id = await backend.commit_snapshot(sandbox_id, commit, timeout=left)
    except trio.TooSlowError:
        raise SnapshotError(
            f"the snapshot of session {session_id} did not finish within {timeout:g} s; "
            "raise session.snapshot_timeout, or keep less data in the session's mounts"
        ).with_hint(retryable=True) from None
    except EngineError as exc:
        raise SnapshotError(
            f"the engine could not keep session {session_id} as an image: {exc}"
        ).with_hint(remedy="check the engine's free space (`docker system df`) and retry") from None
    except OSError as exc:
        raise SnapshotError(
            f"cannot hold the snapshot's files on this host ({exc.strerror or exc}); free "
            "space in the temporary directory (TMPDIR) and retry"
        ).with_hint(retryable=True) from None
    finally:
        if tmp is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))
    seconds = trio.current_time() - started
    log.info("snapshot taken", image=f"{repository}:{snap_id}", seconds=round(seconds, 3))
    return Snapshot(
        image=f"{repository}:{snap_id}",
        image_id=image_id,
        id=snap_id,
        parent_session=session_id,
        parent_image=image,
        created=created,
        files=int(summary.get("files", 0)),
        bytes=int(summary.get("bytes", 0)),
        seconds=round(seconds, 3),
        skipped=list(summary.get("skipped") or []),
        skipped_count=int(summary.get("skipped_count", 0)),
    )


async def _archive(
    client: GuestClient, path: str, snap_id: str, mounts: list[str], limit: int, timeout: float
) -> dict[str, Any]:
    """Stream the mounts' tar from the guest into ``path``; the archiver's summary."""
    request = rq.ExecRequest(
        argv=_snapshot_argv(
            "archive", str(limit // 2), f"{SNAPSHOT_FILES_ROOT.lstrip('/')}/{snap_id}", *mounts
        ),
        timeout=timeout,
        max_output=limit,
        grace=0.5,
        cwd="/",
        user="root",
    )
    report = bytearray()
    async with (
        await trio.open_file(path, "wb") as out,
        client.exec_stream(request, None, collect=False) as running,
    ):
        async for chunk in running:
            if chunk.stream == "stdout":
                await out.write(chunk.data)
            elif len(report) < _REPORT_CAP:
                report.extend(chunk.data[: _REPORT_CAP - len(report)])
        result = await running.result()
    text = bytes(report).decode("utf-8", "replace").strip()
    if result.exit_code == 3 and '"too_large"' in text:
        big = json.loads(text.splitlines()[-1])
        raise SnapshotError(
            f"the session's mounts hold more than {big['limit']} bytes of files (at "
            f"{big['too_large']}; a sparse file counts at its full size); remove what the "
            "snapshot need not keep and retry"
        )
    if result.stdout_truncated:
        raise SnapshotError(
            f"the session's mounts came to more than {limit} bytes of archive; remove "
            "what the snapshot need not keep and retry"
        )
    if result.exit_code != 0 or result.timed_out:
        raise SnapshotError(
            f"archiving the session's mounts failed (exit {result.exit_code}): "
            f"{text[-500:] or 'no message'}"
        )
    try:
        summary: dict[str, Any] = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        summary = {}
    return summary


async def restore_snapshot(
    client: GuestClient, config: Config, shape: SandboxShape, files: str
) -> None:
    """Copy a snapshot's kept mounts (``files``) into this fork's mounts, before it is
    used; ``SnapshotError`` when they do not fit or cannot be written."""
    image, mounts = shape.image, data_mounts(shape.tmpfs)
    request = rq.ExecRequest(
        argv=_snapshot_argv("restore", files, *mounts),
        timeout=config.sandbox.start_timeout,
        max_output=_REPORT_CAP,
        grace=0.5,
        cwd="/",
        user="root",
    )
    async with client.exec_stream(request, None) as running:
        result = await running.result()
    if result.exit_code == 0:
        return
    text = result.stderr.decode("utf-8", "replace").strip()
    try:
        problem = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        problem = {"error": text[-300:] or f"exit {result.exit_code}"}
    mount = problem.get("mount", "?")
    if problem.get("errno") == 28:  # ENOSPC
        raise SnapshotError(
            f"the snapshot {image} keeps more in {mount} than this fork's {mount} holds; "
            f"give the fork a larger one (tmpfs_sizes={{'{mount}': ...}}) or more memory"
        )
    raise SnapshotError(
        f"the fork of {image} could not restore {mount}: {problem.get('error')} "
        f"({problem.get('path')}); take the snapshot again"
    )
