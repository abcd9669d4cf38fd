"""Layer tars and ``docker load`` archives, made without a registry or a build container.

The derived sandbox images are bootstrapped whole by mmdebstrap and then cut
down to a *delta* against ``sbx-base``'s rootfs, so that they stack on
``sbx-base``'s layers without running a single package install inside a
container (slow on fuse-overlayfs).  This module holds the pieces that work
on files only:

* ``index_tar`` describes every entry of a rootfs tar (type, mode, owner,
  size, mtime, link target, xattrs, content digest);
* ``write_delta`` writes the layer that turns one rootfs into another:
  added or changed entries (with all their parent directories, because the
  engine creates a missing parent with mode 0600), overlay whiteouts
  (``.wh.<name>``) for what disappeared, hard links whose target is not in the
  layer turned into regular files;
* ``write_tree_layer`` writes a small layer from in-memory files (the guest);
* ``image_config`` and ``docker_archive`` assemble a docker-save archive
  (``manifest.json``, the image config, one tar per layer) as a byte stream
  for the engine's load endpoint.

Everything here is synchronous and CPU/IO bound: callers run it with
``trio.to_thread.run_sync``.  It must not talk to the engine, spawn processes
or depend on anything Docker-specific beyond the documented archive format.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "WHITEOUT_PREFIX",
    "DeltaPlan",
    "EntryInfo",
    "LayerFile",
    "LayerIndex",
    "docker_archive",
    "file_layer",
    "image_config",
    "index_tar",
    "normalize",
    "plan_delta",
    "write_delta",
    "write_tree_layer",
]

WHITEOUT_PREFIX = ".wh."
_CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE

Report = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """What makes two rootfs entries the same; a hard link compares as its target file."""

    kind: str
    """``file``, ``dir``, ``symlink``, ``char``, ``block`` or ``fifo``."""
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str = ""
    digest: str = ""
    device: tuple[int, int] = (0, 0)
    xattrs: tuple[tuple[str, str], ...] = ()


@dataclass
class LayerIndex:
    """Every entry of one tar by normalised path, plus which paths are hard links to what."""

    entries: dict[str, EntryInfo] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerFile:
    """A layer tar on disk and its ``diff_id`` (sha256 of the uncompressed tar)."""

    path: Path
    diff_id: str
    size: int


@dataclass(frozen=True)
class DeltaPlan:
    """Which derived entries go into the delta, and which base paths get whiteouts."""

    include: frozenset[str]
    whiteouts: tuple[str, ...]
    changed: int
    """Entries added or changed (``include`` also holds their unchanged parent directories)."""


def normalize(name: str) -> str:
    """``./usr/bin/`` → ``usr/bin``; the root directory is ``""``."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def _parent(path: str) -> str:
    return posixpath.dirname(path)


def _kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.ischr():
        return "char"
    if member.isblk():
        return "block"
    if member.isfifo():
        return "fifo"
    raise ValueError(f"unsupported tar entry type {member.type!r} for {member.name}")


def _xattrs(member: tarfile.TarInfo) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((k, v) for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr."))
    )


def _digest_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def index_tar(path: Path, *, report: Report | None = None) -> LayerIndex:
    """Describe every entry of the (uncompressed) tar at ``path``.

    Regular files are read and hashed, so this costs one pass over the data.
    A hard link is recorded as its target's ``EntryInfo`` (the same inode),
    so a changed file changes every name it has.
    """
    index = LayerIndex()
    with tarfile.open(path, "r:") as tar:
        for count, member in enumerate(tar, 1):
            name = normalize(member.name)
            if member.islnk():
                target = normalize(member.linkname)
                info = index.entries.get(target)
                if info is None:
                    raise ValueError(f"{path}: hard link {name} points at unknown {target}")
                index.entries[name] = info
                index.hardlinks[name] = index.hardlinks.get(target, target)
                continue
            kind = _kind(member)
            digest = ""
            if kind == "file":
                stream = tar.extractfile(member)
                assert stream is not None
                digest = _digest_stream(stream)
            index.entries[name] = EntryInfo(
                kind=kind,
                mode=member.mode & 0o7777,
                uid=member.uid,
                gid=member.gid,
                size=member.size if kind == "file" else 0,
                mtime=int(member.mtime),
                linkname=member.linkname if kind == "symlink" else "",
                digest=digest,
                device=(member.devmajor, member.devminor) if kind in ("char", "block") else (0, 0),
                xattrs=_xattrs(member),
            )
            if report is not None and count % 10000 == 0:
                report(f"indexed {count} entries of {path.name}")
    return index


def plan_delta(base: LayerIndex, derived: LayerIndex) -> DeltaPlan:
    """Decide the delta that turns ``base`` into ``derived`` when applied on top of it.

    * an entry is *changed* if it is new or any of its ``EntryInfo`` differs;
    * every ancestor directory of a changed entry or of a whiteout is included
      (unchanged, with its derived metadata), because the engine would create
      a missing parent with mode 0600;
    * a path present in ``base`` but not in ``derived`` gets a whiteout only at
      the top of a removed subtree, and only if its parent is still a directory
      (a directory replaced by a file already hides everything under it).
    """
    derived_entries = derived.entries
    base_entries = base.entries
    changed = {path for path, info in derived_entries.items() if base_entries.get(path) != info}
    removed = set(base_entries) - set(derived_entries)
    whiteouts = sorted(
        path
        for path in removed
        if path
        and _parent(path) in derived_entries
        and derived_entries[_parent(path)].kind == "dir"
    )
    include = set(changed)
    for path in [*changed, *whiteouts]:
        parent = _parent(path)
        while parent and parent not in include:
            if parent in derived_entries:
                include.add(parent)
            parent = _parent(parent)
    return DeltaPlan(include=frozenset(include), whiteouts=tuple(whiteouts), changed=len(changed))


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        super().__init__()
        self._target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._target.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)


def _clean_info(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    """A fresh header for ``member`` under ``name``: no stale pax path, owner names or times."""
    info = tarfile.TarInfo(name)
    info.type = member.type
    info.mode = member.mode & 0o7777
    info.uid = member.uid
    info.gid = member.gid
    info.size = member.size if member.isreg() else 0
    info.mtime = int(member.mtime)
    info.linkname = member.linkname
    info.uname = ""
    info.gname = ""
    info.devmajor = member.devmajor
    info.devminor = member.devminor
    info.pax_headers = dict(_xattrs(member))
    return info


def _out_name(path: str) -> str:
    return path if path else "."


def write_delta(
    derived_tar: Path,
    plan: DeltaPlan,
    out: Path,
    *,
    whiteout_mtime: int = 0,
    report: Report | None = None,
) -> LayerFile:
    """Write the delta layer described by ``plan`` from ``derived_tar`` to ``out``.

    Entries keep the derived tar's order (parents before children, a hard
    link after its target).  A hard link whose target is not in the delta is
    written as a regular file with the target's content, since the target
    it would point to lives in a lower layer the engine will not link across.
    Whiteouts come last; the engine sets directory times after unpacking,
    so they do not disturb the parents' mtimes.
    """
    written_files: set[str] = set()
    with out.open("wb") as raw:
        sink = _HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as dst:
            with tarfile.open(derived_tar, "r:") as src:
                for count, member in enumerate(src, 1):
                    path = normalize(member.name)
                    if report is not None and count % 10000 == 0:
                        report(f"wrote {count} entries")
                    if path not in plan.include:
                        continue
                    info = _clean_info(member, _out_name(path))
                    if member.islnk():
                        target = normalize(member.linkname)
                        if target in written_files:
                            info.linkname = target
                            dst.addfile(info)
                            continue
                        stream = src.extractfile(member)
                        assert stream is not None
                        target_member = src.getmember(member.linkname)
                        info = _clean_info(target_member, _out_name(path))
                        info.type = tarfile.REGTYPE
                        info.linkname = ""
                        dst.addfile(info, stream)
                        written_files.add(path)
                    elif member.isreg():
                        dst.addfile(info, src.extractfile(member))
                        written_files.add(path)
                    else:
                        if not member.issym():
                            info.linkname = ""
                        dst.addfile(info)
            for path in plan.whiteouts:
                whiteout = tarfile.TarInfo(
                    posixpath.join(_parent(path), WHITEOUT_PREFIX + posixpath.basename(path))
                )
                whiteout.mode = 0o600
                whiteout.mtime = whiteout_mtime
                whiteout.uname = whiteout.gname = ""
                dst.addfile(whiteout)
    return LayerFile(path=out, diff_id="sha256:" + sink.digest.hexdigest(), size=sink.size)


def write_tree_layer(
    out: Path,
    files: Mapping[str, bytes],
    *,
    mtime: int,
    file_mode: int = 0o644,
    dir_mode: int = 0o755,
    uid: int = 0,
    gid: int = 0,
) -> LayerFile:
    """A layer holding ``files`` (absolute or relative paths → content) and all their parents.

    Deterministic for the same input (sorted, fixed mtime, no owner names),
    so an unchanged guest gives the same ``diff_id`` and the engine keeps the
    layer it already has.
    """
    contents = {normalize(name): data for name, data in files.items()}
    dirs: set[str] = set()
    for name in contents:
        parent = _parent(name)
        while parent:
            dirs.add(parent)
            parent = _parent(parent)
    with out.open("wb") as raw:
        sink = _HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(dirs | set(contents)):
                info = tarfile.TarInfo(name)
                info.mtime = mtime
                info.uid, info.gid = uid, gid
                info.uname = info.gname = ""
                if name in dirs:
                    info.type = tarfile.DIRTYPE
                    info.mode = dir_mode
                    tar.addfile(info)
                else:
                    data = contents[name]
                    info.mode = file_mode
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return LayerFile(path=out, diff_id="sha256:" + sink.digest.hexdigest(), size=sink.size)


def file_layer(path: Path) -> LayerFile:
    """Describe an existing layer tar (one read to hash it)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return LayerFile(path=path, diff_id="sha256:" + digest.hexdigest(), size=size)


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
            while chunk := stream.read(_CHUNK):
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
