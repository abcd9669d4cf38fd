"""Delta layers: the layer that turns one rootfs tar into another, without a container.

The derived sandbox images are bootstrapped whole by mmdebstrap and then cut
down to a *delta* against ``sbx-base``'s rootfs, so that they stack on
``sbx-base``'s layers without running a single package install inside a
container (slow on fuse-overlayfs).

* ``index_tar`` describes every entry of a rootfs tar (type, mode, owner,
  size, mtime, link target, xattrs, content digest);
* ``plan_delta`` decides what the delta holds;
* ``write_delta`` writes it: added or changed entries (with all their parent
  directories, because the engine creates a missing parent with mode 0600),
  overlay whiteouts (``.wh.<name>``) for what disappeared, hard links whose
  target is not in the layer turned into regular files.

Everything here is synchronous and CPU/IO bound: callers run it with
``trio.to_thread.run_sync``.  It must not talk to an engine or spawn
processes, and it assumes nothing of the engine beyond how overlay layers
are unpacked.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator.images.layer_files import (
    CHUNK_SIZE,
    HashingWriter,
    LayerFile,
    normalize,
    parent_path,
)

__all__ = [
    "WHITEOUT_PREFIX",
    "DeltaPlan",
    "EntryInfo",
    "LayerIndex",
    "index_tar",
    "plan_delta",
    "write_delta",
]

WHITEOUT_PREFIX = ".wh."

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
class DeltaPlan:
    """Which derived entries go into the delta, and which base paths get whiteouts."""

    include: frozenset[str]
    whiteouts: tuple[str, ...]
    changed: int
    """Entries added or changed (``include`` also holds their unchanged parent directories)."""


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
    while chunk := stream.read(CHUNK_SIZE):
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
        and parent_path(path) in derived_entries
        and derived_entries[parent_path(path)].kind == "dir"
    )
    include = set(changed)
    for path in [*changed, *whiteouts]:
        parent = parent_path(path)
        while parent and parent not in include:
            if parent in derived_entries:
                include.add(parent)
            parent = parent_path(parent)
    return DeltaPlan(include=frozenset(include), whiteouts=tuple(whiteouts), changed=len(changed))


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
        sink = HashingWriter(raw)
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
                    posixpath.join(parent_path(path), WHITEOUT_PREFIX + posixpath.basename(path))
                )
                whiteout.mode = 0o600
                whiteout.mtime = whiteout_mtime
                whiteout.uname = whiteout.gname = ""
                dst.addfile(whiteout)
    return LayerFile(path=out, diff_id="sha256:" + sink.digest.hexdigest(), size=sink.size)
