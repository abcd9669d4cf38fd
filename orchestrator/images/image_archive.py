"""The archive an engine loads an image from: image config plus layer tars, streamed.

``image_config`` writes the image config (OCI/Docker image spec) for a stack
of layers; ``docker_archive`` yields a docker-save archive (``manifest.json``,
the config, one tar per layer) chunk by chunk for an engine's load endpoint,
so a gigabyte image is never assembled on disk or in memory.  This is the
documented archive format (``docker save``/``docker load``; Podman reads it
too), not an engine API.

Synchronous: the archive is consumed in a worker thread.  It must not talk to
an engine itself (the load step sends it) or need a registry.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

from orchestrator.images.layer_files import CHUNK_SIZE, LayerFile

__all__ = ["docker_archive", "image_config"]

_BLOCK = tarfile.BLOCKSIZE


def image_config(
    *,
    diff_ids: Sequence[str],
    history: Sequence[str],
    created: str,
    architecture: str,
    user: str,
    working_dir: str,
    entrypoint: Sequence[str],
    env: Sequence[str],
    labels: Mapping[str, str],
) -> bytes:
    """The image config JSON (OCI/Docker image spec) whose sha256 becomes the image id.

    ``history`` has one ``created_by`` text per layer.  ``Cmd`` is null: the
    entrypoint is the whole command.
    """
    if len(history) != len(diff_ids):
        raise ValueError("one history entry per layer is required")
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": {
            "User": user,
            "WorkingDir": working_dir,
            "Entrypoint": list(entrypoint),
            "Cmd": None,
            "Env": list(env),
            "Labels": dict(labels),
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": created, "created_by": text} for text in history],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def _header(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def docker_archive(
    config: bytes,
    layers: Sequence[LayerFile],
    repo_tags: Sequence[str],
    *,
    omit: Collection[str] = (),
    should_stop: Callable[[], bool] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Yield a docker-save archive (``manifest.json``, config, layer tars) chunk by chunk.

    Streamed, so a gigabyte image is never assembled on disk or in memory.
    Layers whose ``diff_id`` is in ``omit`` are sent as empty files: Docker's
    loader never opens the tar of a layer whose chain it already has (checked
    against Engine 20.10), and if a loader ever did, the ``diff_id`` check
    would fail the load rather than produce a wrong image, so the caller can
    retry with ``omit`` empty.  ``should_stop`` is polled between chunks to
    abandon the upload (the engine then discards the partial load);
    ``on_bytes`` counts progress.
    """
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_names = [f"{layer.diff_id.split(':', 1)[1]}/layer.tar" for layer in layers]
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}]
    ).encode()

    def small(name: str, data: bytes) -> bytes:
        return _header(name, len(data)) + data + _padding(len(data))

    yield small("manifest.json", manifest)
    yield small(config_name, config)
    written: set[str] = set()
    for layer, name in zip(layers, layer_names, strict=True):
        if name in written:
            continue
        written.add(name)
        yield _header(name.split("/", 1)[0] + "/", 0, directory=True)
        if layer.diff_id in omit:
            yield _header(name, 0)
            continue
        yield _header(name, layer.size)
        sent = 0
        with layer.path.open("rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                if should_stop is not None and should_stop():
                    raise InterruptedError("the image load was abandoned")
                sent += len(chunk)
                if sent > layer.size:
                    raise ValueError(f"layer {layer.path} grew while it was being sent")
                if on_bytes is not None:
                    on_bytes(len(chunk))
                yield chunk
        if sent != layer.size:
            raise ValueError(f"layer {layer.path} is {sent} bytes, expected {layer.size}")
        yield _padding(layer.size)
    yield b"\0" * (_BLOCK * 2)
