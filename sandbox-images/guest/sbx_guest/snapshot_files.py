"""A session's tmpfs mounts as a tar stream, and back: the in-sandbox half of snapshots.

``docker commit`` captures a container's root changes but none of its mounts,
and ``/workspace``, ``/tmp``, ``/var/tmp`` and the home directory are tmpfs
mounts.  So a snapshot asks the guest to run this module (as root, which holds
``CAP_DAC_OVERRIDE``: files a user made unreadable, or root's own, are read
all the same) with ``archive``: it writes one tar of the mounts to stdout,
every name under ``PREFIX/<mount>``, and the host puts that tar into the
committed image.  When a fork starts, ``restore`` copies ``PREFIX/<mount>``
from the image into the fork's fresh tmpfs mounts, owners, modes and times
kept, before any command of the fork runs.

The guest's own runtime state (the desktop's sockets and logs, X locks,
``/run``) is never archived: the host names only the data mounts, and
``GUEST_STATE`` is skipped inside them.  Sockets and device nodes are skipped
too (they mean nothing in another sandbox).  A summary (files, bytes, what
was skipped and why) goes to stderr as one JSON line.

The tree is walked with directory descriptors and ``O_NOFOLLOW`` (``os.fwalk``):
code in the sandbox may swap a directory for a symlink while it is read, and
that must not make root read anything outside the mounts.

Must not: import anything outside the standard library, follow a symlink, or
write anything but the tar to stdout.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tarfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Dict, List

GUEST_STATE = ("/tmp/sbx-desktop", "/tmp/.X11-unix", "/tmp/.ICE-unix")
"""Directories of the guest's own runtime state inside the data mounts: never archived."""
_SKIPPED_REPORT = 50
"""How many skipped paths the summary names (the count is always complete)."""
_CHUNK = 1 << 20


class TooLarge(Exception):
    """The mounts' files come to more than the host will take (a sparse file counts at its
    full size: a tar holds every byte)."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(path)
        self.path, self.limit = path, limit


def _guest_state(path: str) -> bool:
    if any(path == p or path.startswith(p + "/") for p in GUEST_STATE):
        return True
    name = os.path.basename(path)
    return os.path.dirname(path) == "/tmp" and name.startswith(".X") and name.endswith("-lock")


class _Exact:
    """A file read as exactly ``size`` bytes: cut short if it grew, zero-padded if it shrank
    (code in the sandbox may change a file while it is archived)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.left = fd, size

    def read(self, n: int = -1) -> bytes:
        want = self.left if n is None or n < 0 else min(n, self.left)
        if want <= 0:
            return b""
        data = os.read(self.fd, want)
        if not data:
            data = b"\0" * want
        self.left -= len(data)
        return data


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


class Archiver:
    """Writes mounts into one tar stream, counting what it wrote and what it skipped."""

    def __init__(self, out: IO[bytes], prefix: str, limit: int = 1 << 62) -> None:
        # Closed by close(): the archive spans many calls.
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.prefix = prefix.strip("/")
        self.limit = limit
        self.files = 0
        self.bytes = 0
        self.skipped: List[Dict[str, str]] = []
        self.skipped_count = 0

    def skip(self, path: str, why: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < _SKIPPED_REPORT:
            self.skipped.append({"path": path, "reason": why})

    def add_prefix_dirs(self) -> None:
        parts = self.prefix.split("/")
        for i in range(1, len(parts) + 1):
            info = tarfile.TarInfo("/".join(parts[:i]))
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            self.tar.addfile(info)

    def add_mount(self, mount: str) -> None:
        try:
            top = os.stat(mount, follow_symlinks=False)
        except OSError as exc:
            self.skip(mount, exc.strerror or str(exc))
            return
        if not stat.S_ISDIR(top.st_mode):
            self.skip(mount, "not a directory")
            return
        base = "%s/%s" % (self.prefix, mount.strip("/"))
        info = _info(base, top)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)
        walk = os.fwalk(mount, topdown=True, onerror=lambda e: self.skip(str(e.filename), str(e)))
        for dirpath, dirnames, filenames, dirfd in walk:
            rel = os.path.relpath(dirpath, mount)
            here = base if rel == "." else "%s/%s" % (base, rel)
            keep = []
            for name in dirnames:
                path = os.path.join(dirpath, name)
                if _guest_state(path):
                    continue
                if self.add_entry(path, "%s/%s" % (here, name), name, dirfd):
                    keep.append(name)
            dirnames[:] = keep
            for name in filenames:
                path = os.path.join(dirpath, name)
                if not _guest_state(path):
                    self.add_entry(path, "%s/%s" % (here, name), name, dirfd)

    def add_entry(self, path: str, arcname: str, name: str, dirfd: int) -> bool:
        """One entry; ``True`` for a directory to descend into."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except OSError as exc:
            self.skip(path, exc.strerror or str(exc))
            return False
        info = _info(arcname, st)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
            return True
        if stat.S_ISLNK(mode):
            try:
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dirfd)
            except OSError as exc:
                self.skip(path, exc.strerror or str(exc))
                return False
            self.tar.addfile(info)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
            self.tar.addfile(info)
        elif stat.S_ISREG(mode):
            self.add_file(path, name, dirfd, info, st)
        else:
            self.skip(path, "a socket or device node")
        return False

    def add_file(
        self, path: str, name: str, dirfd: int, info: tarfile.TarInfo, st: os.stat_result
    ) -> None:
        if self.bytes + st.st_size > self.limit:
            raise TooLarge(path, self.limit)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
        try:
            fd = os.open(name, flags, dir_fd=dirfd)
        except OSError:
            try:
                fd = os.open(name, flags & ~getattr(os, "O_NOATIME", 0), dir_fd=dirfd)
            except OSError as exc:
                self.skip(path, exc.strerror or str(exc))
                return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped after the stat
                self.skip(path, "changed while being archived")
                return
            info.type, info.size = tarfile.REGTYPE, st.st_size
            self.tar.addfile(info, _Exact(fd, st.st_size))  # type: ignore[arg-type]
            self.files += 1
            self.bytes += st.st_size
        finally:
            os.close(fd)

    def close(self) -> Dict[str, object]:
        self.tar.close()
        return {
            "files": self.files,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "skipped_count": self.skipped_count,
        }


def archive(
    prefix: str, mounts: List[str], out: IO[bytes], limit: int = 1 << 62
) -> Dict[str, object]:
    archiver = Archiver(out, prefix, limit)
    archiver.add_prefix_dirs()
    for mount in mounts:
        archiver.add_mount(mount)
    return archiver.close()


def _copy_attrs(st: os.stat_result, path: str) -> None:
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    except (NotImplementedError, OSError):
        pass


def _copy_file(src: str, dst: str, size: int) -> None:
    """Copy by ``sendfile`` (in the kernel: no trip through this process's memory), with a
    plain read/write loop where the filesystems do not support it."""
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            done = 0
            try:
                while done < size:
                    sent = os.sendfile(fout, fin, done, min(size - done, 1 << 30))
                    if sent == 0:
                        break
                    done += sent
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
            os.lseek(fin, done, os.SEEK_SET)
            while True:
                data = os.read(fin, _CHUNK)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(fout, view) :]
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def restore(source: str, mount: str) -> Dict[str, int]:
    """Copy the tree ``source`` into the (fresh, empty) mount ``mount``; the mount's own
    owner and mode stay the fork's."""
    files = size = 0
    if not os.path.isdir(source):
        return {"files": 0, "bytes": 0}
    dirs = []
    for dirpath, dirnames, filenames, _ in os.fwalk(source):
        rel = os.path.relpath(dirpath, source)
        target = mount if rel == "." else os.path.join(mount, rel)
        for name in dirnames + filenames:
            src, dst = os.path.join(dirpath, name), os.path.join(target, name)
            st = os.stat(src, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                try:
                    os.mkdir(dst, 0o700)
                except FileExistsError:
                    if not stat.S_ISDIR(os.stat(dst, follow_symlinks=False).st_mode):
                        raise
                dirs.append((st, dst))
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(dst, 0o600)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(src, dst, st.st_size)
                files += 1
                size += st.st_size
            else:
                continue
            _copy_attrs(st, dst)
    for st, dst in reversed(dirs):  # after their contents: a read-only dir is filled first
        _copy_attrs(st, dst)
    return {"files": files, "bytes": size}


def main(argv: List[str]) -> int:
    """``archive LIMIT PREFIX MOUNT...`` (tar on stdout; exit 3 past ``LIMIT`` bytes of
    files) or ``restore SOURCE MOUNT...``."""
    if len(argv) < 2 or argv[0] not in ("archive", "restore"):
        sys.stderr.write("usage: archive LIMIT PREFIX MOUNT... | restore SOURCE MOUNT...\n")
        return 2
    os.umask(0o077)
    if argv[0] == "archive":
        out = os.fdopen(os.dup(1), "wb", buffering=_CHUNK)
        try:
            summary = archive(argv[2], argv[3:], out, int(argv[1]))
        except TooLarge as exc:
            sys.stderr.write(json.dumps({"too_large": exc.path, "limit": exc.limit}) + "\n")
            return 3
        out.close()
        sys.stderr.write(json.dumps(summary) + "\n")
        return 0
    totals: Dict[str, object] = {}
    for mount in argv[2:]:
        try:
            totals[mount] = restore(os.path.join(argv[1], mount.strip("/")), mount)
        except OSError as exc:
            sys.stderr.write(
                json.dumps(
                    {
                        "error": exc.strerror or str(exc),
                        "errno": exc.errno,
                        "mount": mount,
                        "path": exc.filename,
                    }
                )
                + "\n"
            )
            return 1
    sys.stderr.write(json.dumps({"restored": totals}) + "\n")
    return 0
