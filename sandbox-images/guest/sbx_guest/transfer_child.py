"""The child process behind a streamed transfer (see ``transfer``): plain blocking I/O.

Started as the session's user with the transfer's data on stdin or stdout,
it confines every path to the allowed roots with the same ``FileService``
that file calls use, moves the data in bounded chunks, and ends with one JSON
line on stderr: ``{"ok": true, "r": {...}}`` or ``{"ok": false, "code": ...,
"msg": ..., "details": ...}``.  A file is written to a temporary name and
renamed into place only once all of it arrived, so a transfer cut short (a
cancel, a deadline: TERM) leaves no half-written file behind.

Unpacking a folder trusts nothing in the archive: no absolute names, no
``..``, nothing written through a symlink, no hard link leaving the folder,
no devices or FIFOs, and the size limit counted as bytes arrive.

Must not: hold a whole file in memory, or write outside the folder or the
allowed roots it was given.
"""

from __future__ import annotations

import binascii
import json
import os
import signal
import stat
import sys
import tarfile

from . import protocol
from .errors import CallError, os_error
from .files import FileService

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Dict, List, Optional

CHUNK = 1 << 20
MAX_META_HEADER = 1 << 20
"""The largest pax or GNU long-name header taken (a hostile one would be held in memory)."""


class Stopped(Exception):
    """SIGTERM: the host cancelled the transfer or its deadline passed."""


def _stop(*_: object) -> None:
    raise Stopped()


def main(argv: List[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    mode, spec = argv[0], json.loads(argv[1])
    files = FileService([str(r) for r in spec["roots"]], int(spec["limit"]))
    try:
        value = MODES[mode](files, spec)
    except CallError as exc:
        return _verdict({"ok": False, "code": exc.code, "msg": exc.message, "details": exc.details})
    except Stopped:
        return _verdict({"ok": False, "code": protocol.E_BAD_REQUEST, "msg": "cancelled"})
    except tarfile.TarError as exc:
        return _verdict(
            {
                "ok": False,
                "code": protocol.E_BAD_REQUEST,
                "msg": "the archive is not a valid tar stream: %s" % exc,
            }
        )
    except OSError as exc:
        error = os_error(exc, str(spec.get("path")), "transfer")
        return _verdict({"ok": False, "code": error.code, "msg": error.message})
    return _verdict({"ok": True, "r": value})


def _verdict(value: Dict[str, object]) -> int:
    sys.stderr.write("\n" + json.dumps(value) + "\n")
    sys.stderr.flush()
    return 0 if value.get("ok") else 1


def _too_large(path: str, size: int, limit: int) -> CallError:
    return CallError(
        protocol.E_TOO_LARGE,
        "%s: %d bytes or more, over the %d-byte limit of one transfer; raise "
        "session.file_size_limit (or the call's limit) or send less" % (path, size, limit),
        {"path": path, "size": size, "limit": limit},
    )


# -- one file ---------------------------------------------------------------------


def write(files: FileService, spec: dict) -> dict:
    """stdin to ``path``: a temporary file in the same folder, renamed once complete."""
    path = str(spec["path"])
    real = files.resolve(path)
    limit = int(spec["limit"])
    parent = os.path.dirname(real)
    if spec.get("parents", True):
        files._makedirs(parent, path)
    existing: Optional[os.stat_result]
    try:
        existing = os.lstat(real)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise CallError(protocol.E_IS_DIRECTORY, "%s is a directory; pass a file path" % path)
        if not spec.get("overwrite", True):
            raise CallError(protocol.E_EXISTS, "%s already exists; remove it first" % path)
    mode = spec.get("mode")
    if mode is None:
        mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o644
    tmp = os.path.join(
        parent,
        ".%s.%s.sbx-tmp" % (os.path.basename(real), binascii.hexlify(os.urandom(6)).decode()),
    )
    source = sys.stdin.buffer
    size = 0
    try:
        with open(tmp, "xb") as out:
            while True:
                chunk = source.read1(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise _too_large(path, size, limit)
                out.write(chunk)
            os.fchmod(out.fileno(), int(mode))
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return {"path": path, "size": size, "created": existing is None}


def read(files: FileService, spec: dict) -> dict:
    """``path`` (from ``offset``, ``length`` bytes at most) to stdout."""
    path = str(spec["path"])
    real = files.resolve(path)
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise CallError(protocol.E_IS_DIRECTORY, "%s is a directory; list it instead" % path)
        if not stat.S_ISREG(info.st_mode):
            raise CallError(protocol.E_BAD_REQUEST, "%s is not a regular file" % path)
        os.set_blocking(fd, True)
        offset = int(spec.get("offset") or 0)
        remaining = info.st_size - offset
        if spec.get("length") is not None:
            remaining = min(remaining, int(spec["length"]))
        limit = int(spec["limit"])
        if remaining > limit:
            raise _too_large(path, remaining, limit)
        source.seek(offset)
        out = sys.stdout.buffer
        sent = 0
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                break
            out.write(chunk)
            sent += len(chunk)
            remaining -= len(chunk)
        out.flush()
    return {"path": path, "size": info.st_size, "length": sent, "mode": stat.S_IMODE(info.st_mode)}


# -- folders ----------------------------------------------------------------------


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses pax and long-name headers over ``MAX_META_HEADER`` before reading them."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        meta = (
            tarfile.XHDTYPE,
            tarfile.XGLTYPE,
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
        )
        if self.type in meta and self.size > MAX_META_HEADER:
            raise tarfile.HeaderError("a %d-byte pax or long-name header" % self.size)
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def get_dir(files: FileService, spec: dict) -> dict:
    """The folder ``path`` as a tar stream on stdout; symlinks as links, never followed."""
    path = str(spec["path"])
    real = files.resolve(path)
    if not os.path.isdir(real):
        if os.path.lexists(real):
            raise CallError(protocol.E_NOT_DIRECTORY, "%s is not a directory" % path)
        raise CallError(protocol.E_NOT_FOUND, "%s does not exist" % path)
    count = 0
    skipped: List[str] = []
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        stack = [(real, ".")]
        while stack:
            folder, shown = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                skipped.append(shown)
                continue
            for entry in entries:
                name = shown + "/" + entry.name if shown != "." else entry.name
                try:
                    info = tar.gettarinfo(entry.path, arcname=name)
                except OSError:
                    skipped.append(name)
                    continue
                if info.isreg():
                    try:
                        with open(entry.path, "rb") as source:
                            tar.addfile(info, source)
                    except OSError:
                        skipped.append(name)
                        continue
                elif info.isdir() or info.issym() or info.islnk():
                    tar.addfile(info)
                else:
                    skipped.append(name)
                    continue
                count += 1
                if info.isdir():
                    stack.append((entry.path, name))
    sys.stdout.buffer.flush()
    return {"path": path, "entries": count, "skipped": skipped[:100]}


def put_dir(files: FileService, spec: dict) -> dict:
    """A tar stream on stdin unpacked into the folder ``path`` (made if missing)."""
    path = str(spec["path"])
    real = files.resolve(path)
    limit = int(spec["limit"])
    try:
        os.makedirs(real, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, path, "create the folder") from None
    if not os.path.isdir(real) or not files._inside(os.path.realpath(real)):
        raise CallError(
            protocol.E_NOT_DIRECTORY, "%s is not a folder under the allowed roots" % path
        )
    base = os.path.realpath(real)
    total = 0
    count = 0
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|", tarinfo=_BoundedTarInfo) as tar:
        for member in tar:
            name = _safe_name(member.name)
            if name is None:
                continue
            target = os.path.join(base, name)
            parent = os.path.dirname(target)
            _make_folder(base, parent)
            if os.path.realpath(parent) != parent:
                raise CallError(
                    protocol.E_PATH_NOT_ALLOWED,
                    "archive entry %r would be written through a symbolic link" % member.name,
                )
            if member.isdir():
                _make_folder(base, target)
                os.chmod(target, (member.mode & 0o777) | 0o700)
            elif member.isreg():
                total += member.size
                if total > limit:
                    raise _too_large(path, total, limit)
                _clear(target)
                source = tar.extractfile(member)
                assert source is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = source.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                    os.fchmod(fd, member.mode & 0o777)
                os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
            elif member.issym():
                _clear(target)
                os.symlink(member.linkname, target)
            elif member.islnk():
                source_name = _safe_name(member.linkname)
                if source_name is None:
                    raise CallError(
                        protocol.E_PATH_NOT_ALLOWED,
                        "archive entry %r is a hard link out of the folder" % member.name,
                    )
                source_path = os.path.join(base, source_name)
                if not os.path.realpath(os.path.dirname(source_path)).startswith(base):
                    raise CallError(
                        protocol.E_PATH_NOT_ALLOWED,
                        "archive entry %r links through a symbolic link" % member.name,
                    )
                _clear(target)
                os.link(source_path, target, follow_symlinks=False)
            else:
                raise CallError(
                    protocol.E_BAD_REQUEST,
                    "archive entry %r is a device or FIFO, which is not unpacked" % member.name,
                )
            count += 1
    return {"path": path, "entries": count, "bytes": total}


def _safe_name(name: str) -> Optional[str]:
    """``name`` relative to the folder, or ``None`` for the folder itself; an error if it leaves."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts or "\0" in name:
        raise CallError(
            protocol.E_PATH_NOT_ALLOWED,
            "archive entry %r leaves the folder (absolute, or through '..')" % name,
        )
    return "/".join(parts) or None


def _make_folder(base: str, folder: str) -> None:
    """Make ``folder`` (under ``base``) one component at a time, never through a symlink."""
    current = base
    for part in os.path.relpath(folder, base).split("/"):
        if part in ("", "."):
            continue
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise CallError(
                protocol.E_PATH_NOT_ALLOWED,
                "%s is not a folder (a file or a symbolic link) in the archive's way" % current,
            )


def _clear(target: str) -> None:
    """Remove what is at ``target`` (not a folder) so the entry replaces it, link or file."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise CallError(protocol.E_IS_DIRECTORY, "%s is a folder in the archive's way" % target)
    os.unlink(target)


MODES = {"write": write, "read": read, "get_dir": get_dir, "put_dir": put_dir}
