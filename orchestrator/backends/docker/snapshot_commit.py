"""A sandbox's filesystem as a local image: ``docker commit``, plus its tmpfs mounts.

``docker commit`` keeps the container's root changes but none of its mounts,
and a sandbox's data lives in tmpfs mounts.  Their contents arrive here as a
tar (streamed by the guest, see ``orchestrator.snapshots``) whose names all
lie under ``SNAPSHOT_FILES_ROOT/<id>``, and the image is made in two steps:

1. the running sandbox's root is committed *without pausing it* (a pause is
   an engine event the session's health watch would take for a stuck
   sandbox), as an untagged image labelled ``LABEL_SNAPSHOT_PARTIAL``;
2. that tar becomes one more layer on top of it: an image config naming the
   committed layers plus the new one is loaded with the engine's image
   loader (``docker load`` format), which never reads the tars of layers it
   already has.  A second commit would do the same, but on fuse-overlayfs
   each commit walks the whole image (seven seconds for the code runner,
   measured here); hashing and loading the new layer costs only its size.

The config is written fresh, so the snapshot carries its own labels and none
of the sandbox's (its session, supervisor, expiry, client).  The committed
image of step 1 is removed afterwards (the snapshot shares its layers), and on
any failure or cancellation, shielded; one whose commit the engine finished
after we gave up keeps its partial label, which ``sbx gc --snapshots``
collects.

Must not: let a docker-py type out, or keep the first commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import structlog
import trio

from orchestrator.backends.base import LABEL_SNAPSHOT_PARTIAL, SnapshotCommit
from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.backends.docker.image_engine import DockerImageEngine
from orchestrator.errors import EngineError
from orchestrator.images.image_archive import docker_archive, image_config
from orchestrator.images.layer_files import LayerFile, file_layer

__all__ = ["commit_snapshot"]

log = structlog.get_logger("orchestrator.docker")

_CLEANUP_TIMEOUT = 30.0


async def commit_snapshot(
    engine: DockerEngine, sandbox_id: str, commit: SnapshotCommit, *, timeout: float
) -> str:
    """The id of the snapshot image of ``sandbox_id`` (see the module), within ``timeout``."""
    api = (await engine.connected()).api
    deadline = trio.current_time() + timeout

    def left() -> float:
        return max(0.1, deadline - trio.current_time())

    first: dict[str, Any] = await engine.call(
        f"committing the root of sandbox {sandbox_id[:12]}",
        api.commit,
        sandbox_id,
        conf={"Labels": {LABEL_SNAPSHOT_PARTIAL: commit.tag}},
        pause=False,
        timeout=left(),
    )
    committed = str(first["Id"])
    stop = False
    try:
        attrs: dict[str, Any] = await engine.call(
            f"inspecting the commit of sandbox {sandbox_id[:12]}",
            api.inspect_image,
            committed,
            timeout=left(),
        )
        below = [str(d) for d in (attrs.get("RootFS") or {}).get("Layers") or []]
        settings = attrs.get("Config") or {}
        files = await trio.to_thread.run_sync(file_layer, Path(commit.files_archive))
        created = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        config = image_config(
            diff_ids=[*below, files.diff_id],
            history=[
                *("sbx snapshot: the image and its root changes" for _ in below),
                "sbx snapshot: the tmpfs mounts",
            ],
            created=created,
            architecture=str(attrs.get("Architecture") or "amd64"),
            user=commit.user,
            working_dir=commit.workdir,
            entrypoint=list(settings.get("Entrypoint") or []),
            env=list(settings.get("Env") or []),
            labels=dict(commit.labels),
        )
        layers = [LayerFile(path=Path("/dev/null"), diff_id=d, size=0) for d in below]
        archive = docker_archive(
            config,
            [*layers, files],
            [f"{commit.repository}:{commit.tag}"],
            omit=set(below),
            should_stop=lambda: stop,
        )
        await DockerImageEngine(engine).load_image_archive(
            f"{commit.repository}:{commit.tag}",
            archive,
            should_stop=lambda: stop,
            on_unpacking=lambda done, total: None,
            timeout=left(),
        )
        return "sha256:" + hashlib.sha256(config).hexdigest()
    finally:
        stop = True
        with trio.CancelScope(shield=True):
            await _quietly(
                engine, "removing a snapshot's first commit", api.remove_image, committed
            )


async def _quietly(engine: DockerEngine, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """A clean-up call that must not hide the error that caused it (logged instead)."""
    try:
        await engine.call(what, fn, *args, timeout=_CLEANUP_TIMEOUT, guarded=False, **kwargs)
    except EngineError as exc:
        log.warning("snapshot clean-up failed; `sbx gc --snapshots` retries", error=str(exc))
