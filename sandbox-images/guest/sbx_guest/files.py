"""File operations inside the sandbox, confined to the allowed roots.

Every path is resolved with ``realpath`` -- following symlinks and ``..`` --
and must land inside one of the allowed roots, so neither a symlink nor
``..`` can reach outside them.  The final open uses ``O_NOFOLLOW`` on the
resolved path, so a symlink swapped in after the check is refused rather than
followed.  The guest runs as the sandbox user, so permissions are that
user's, never more.  Writes are atomic: a temporary file in the same
directory, then ``rename``.  Must not: act on a path it has not resolved and
confined, or leave a half-written file where a reader could see it.
"""

from __future__ import annotations

import binascii
import itertools
import json
import os
import stat

from . import protocol
from .errors import CallError, os_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Dict, Iterator, List, Optional, Tuple

MAX_LIST_ENTRIES = 10000
MAX_LIST_BYTES = 768 << 10
"""A listing's entries as JSON, at most: the answer travels in one frame header,
capped at ``protocol.MAX_HEADER_BYTES`` (10,000 entries of long paths are more)."""


def read_directory(path: str, most: int) -> Tuple[List[os.DirEntry], bool]:
    """The entries of ``path`` by name, and whether there were more than ``most``.

    At most ``most + 1`` entries are read: a directory of a million entries, made
    by user code in seconds, is never read (and sorted) whole in the guest's loop.
    Which ``most`` a truncated listing shows is up to the file system's order.
    """
    with os.scandir(path) as listing:
        items = list(itertools.islice(listing, most + 1))
    more = len(items) > most
    items = sorted(items[:most], key=lambda e: e.name)
    return items, more


def walk_tree(root: str, max_entries: Optional[int] = None) -> Iterator[Tuple[str, os.stat_result]]:
    """``(path, lstat)`` of every entry below ``root`` that is not a directory.

    Symlinks are reported, never followed; unreadable directories are skipped.
    ``max_entries`` bounds the entries looked at, directories included: the
    walk runs in the guest's loop, and user code can make a million empty
    directories in a second; an unbounded walk of them would stall every call.
    """
    stack = [root]
    seen = 0
    while stack:
        try:
            listing = os.scandir(stack.pop())
        except OSError:
            continue
        with listing:
            for entry in listing:
                seen += 1
                if max_entries is not None and seen > max_entries:
                    return
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
                else:
                    yield entry.path, info


class FileService:
    def __init__(self, roots: List[str], max_file: int) -> None:
        self.set_roots(roots)
        self.max_file = max_file

    def set_roots(self, roots: List[str]) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self.roots_text = ", ".join(roots)

    # -- confinement ------------------------------------------------------------

    def _inside(self, real: str) -> bool:
        return any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.roots)

    def resolve(self, path: object, *, follow_final: bool = True) -> str:
        """The real path of ``path``, or ``CallError(path_not_allowed)``.

        With ``follow_final=False`` the last component is not resolved, so an
        operation can act on a symlink itself (remove, stat) as long as the
        directory holding it is allowed.
        """
        if not isinstance(path, str) or not path:
            raise CallError(protocol.E_BAD_REQUEST, "'path' must be a non-empty string")
        if "\0" in path:
            raise CallError(protocol.E_BAD_REQUEST, "a path cannot contain NUL bytes")
        if not path.startswith("/"):
            raise CallError(
                protocol.E_BAD_REQUEST,
                "path %r is relative; pass an absolute path such as /workspace/%s"
                % (path, path.lstrip("./")),
            )
        try:
            if follow_final:
                real = os.path.realpath(path)
            else:
                parent, name = os.path.split(os.path.normpath(path))
                real = (
                    os.path.join(os.path.realpath(parent), name) if name else os.path.realpath(path)
                )
        except OSError as exc:
            # A link on the way that the sandbox user may not read (/proc/1/root, planted
            # under a root) leads out of reach: refused as such, not an internal error.
            raise CallError(
                protocol.E_PATH_NOT_ALLOWED,
                "%s cannot be resolved (%s on a symbolic link on the way); use a path under "
                "one of the allowed directories (%s)"
                % (path, os.strerror(exc.errno or 0).lower(), self.roots_text),
                {"path": path, "roots": self.roots},
            ) from None
        if not self._inside(real):
            via = ""
            if os.path.normpath(path) != real:
                via = " (it resolves to %s through '..' or a symbolic link)" % real
            raise CallError(
                protocol.E_PATH_NOT_ALLOWED,
                "%s is outside the allowed directories (%s)%s; use a path under one of them"
                % (path, self.roots_text, via),
                {"path": path, "resolved": real, "roots": self.roots},
            )
        return real

    # -- operations -------------------------------------------------------------

    def read(self, args: dict) -> Tuple[dict, bytes]:
        path = args.get("path")
        real = self.resolve(path)
        offset = int(args.get("offset") or 0)
        length = args.get("length")
        limit = min(int(args.get("max_bytes") or self.max_file), protocol.MAX_PAYLOAD_BYTES)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise os_error(exc, str(path), "read") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise CallError(
                    protocol.E_IS_DIRECTORY,
                    "%s is a directory; list it instead of reading it" % path,
                    {"path": path},
                )
            if not stat.S_ISREG(info.st_mode):
                raise CallError(
                    protocol.E_BAD_REQUEST,
                    "%s is not a regular file (a device, pipe or socket) and cannot be read" % path,
                )
            available = info.st_size - offset
            want = available if length is None else min(int(length), available)
            want = max(0, want)
            if want > limit:
                raise CallError(
                    protocol.E_TOO_LARGE,
                    "%s is %d bytes, over the %d-byte limit of one read; read it in parts "
                    "(offset/length) or raise the file size limit" % (path, info.st_size, limit),
                    {"path": path, "size": info.st_size, "limit": limit},
                )
            os.set_blocking(fd, True)
            chunks = []
            remaining = want
            position = offset
            while remaining > 0:
                chunk = os.pread(fd, min(remaining, 1 << 20), position)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
                position += len(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
        return {
            "size": info.st_size,
            "offset": offset,
            "length": len(data),
            "mode": stat.S_IMODE(info.st_mode),
            "mtime": info.st_mtime,
        }, data

    def write(self, args: dict, payload: bytes) -> dict:
        path = args.get("path")
        real = self.resolve(path)
        if len(payload) > self.max_file:
            raise CallError(
                protocol.E_TOO_LARGE,
                "refusing to write %d bytes to %s: over the %d-byte file size limit"
                % (len(payload), path, self.max_file),
                {"path": path, "size": len(payload), "limit": self.max_file},
            )
        overwrite = args.get("overwrite", True)
        parent = os.path.dirname(real)
        if args.get("parents"):
            self._makedirs(parent, str(path))
        existing: Optional[os.stat_result]
        try:
            existing = os.lstat(real)
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise os_error(exc, str(path), "write") from None
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise CallError(
                    protocol.E_IS_DIRECTORY,
                    "%s is a directory; pass a file path" % path,
                    {"path": path},
                )
            if not overwrite:
                raise CallError(
                    protocol.E_EXISTS,
                    "%s already exists; remove it first or allow overwriting" % path,
                    {"path": path},
                )
        mode = args.get("mode")
        if mode is None:
            mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o644
        tmp = os.path.join(
            parent,
            ".%s.%s.sbx-tmp" % (os.path.basename(real), binascii.hexlify(os.urandom(6)).decode()),
        )
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise os_error(exc, str(path), "write") from None
        try:
            try:
                view = memoryview(payload)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fchmod(fd, int(mode))
            finally:
                os.close(fd)
            os.replace(tmp, real)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise os_error(exc, str(path), "write") from None
        return {"path": path, "size": len(payload), "created": existing is None}

    def _makedirs(self, real_dir: str, shown: str) -> None:
        try:
            os.makedirs(real_dir, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, shown, "create the directories of") from None
        # A component created by someone else may be a symlink out: check again.
        if not self._inside(os.path.realpath(real_dir)):
            raise CallError(protocol.E_PATH_NOT_ALLOWED, "%s escapes the allowed roots" % shown)

    def _describe(self, name: str, full: str, info: os.stat_result) -> Dict[str, object]:
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            kind = "symlink"
        elif stat.S_ISDIR(mode):
            kind = "directory"
        elif stat.S_ISREG(mode):
            kind = "file"
        else:
            kind = "other"
        entry: Dict[str, object] = {
            "name": name,
            "path": full,
            "type": kind,
            "size": info.st_size,
            "mode": stat.S_IMODE(mode),
            "mtime": info.st_mtime,
            "uid": info.st_uid,
            "gid": info.st_gid,
        }
        if kind == "symlink":
            try:
                entry["target"] = os.readlink(full)
            except OSError:
                pass
        return entry

    def list(self, args: dict) -> dict:
        path = args.get("path")
        real = self.resolve(path)
        depth = max(1, int(args.get("depth") or 1))
        hidden = bool(args.get("hidden", True))
        entries: List[Dict[str, object]] = []
        truncated = False
        budget = [MAX_LIST_BYTES]
        base = str(path).rstrip("/") or "/"

        def walk(directory: str, shown: str, level: int) -> None:
            nonlocal truncated
            try:
                items, more = read_directory(directory, MAX_LIST_ENTRIES)
            except OSError as exc:
                if level == 1:
                    raise os_error(exc, str(path), "list") from None
                return
            truncated = truncated or more
            for item in items:
                if not hidden and item.name.startswith("."):
                    continue
                if len(entries) >= MAX_LIST_ENTRIES:
                    truncated = True
                    return
                try:
                    info = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                child_shown = shown.rstrip("/") + "/" + item.name
                entry = self._describe(item.name, child_shown, info)
                budget[0] -= len(json.dumps(entry)) + 2
                if budget[0] < 0:
                    truncated = True
                    return
                entries.append(entry)
                if level < depth and stat.S_ISDIR(info.st_mode):
                    walk(item.path, child_shown, level + 1)

        if not os.path.isdir(real):
            if os.path.exists(real):
                raise CallError(
                    protocol.E_NOT_DIRECTORY, "%s is not a directory" % path, {"path": path}
                )
            raise CallError(protocol.E_NOT_FOUND, "%s does not exist" % path, {"path": path})
        walk(real, base, 1)
        return {"path": path, "entries": entries, "truncated": truncated}

    def stat(self, args: dict) -> dict:
        path = args.get("path")
        follow = bool(args.get("follow", True))
        real = self.resolve(path, follow_final=follow)
        try:
            info = os.stat(real) if follow else os.lstat(real)
        except OSError as exc:
            raise os_error(exc, str(path), "stat") from None
        return self._describe(os.path.basename(real), str(path), info)

    def mkdir(self, args: dict) -> dict:
        path = args.get("path")
        real = self.resolve(path)
        parents = bool(args.get("parents", True))
        exist_ok = bool(args.get("exist_ok", True))
        try:
            if parents:
                os.makedirs(real, exist_ok=exist_ok)
            else:
                os.mkdir(real)
        except FileExistsError:
            if not (exist_ok and os.path.isdir(real)):
                raise CallError(
                    protocol.E_EXISTS, "%s already exists" % path, {"path": path}
                ) from None
        except OSError as exc:
            raise os_error(exc, str(path), "create directory") from None
        return {"path": path}

    def remove(self, args: dict) -> dict:
        path = args.get("path")
        real = self.resolve(path, follow_final=False)
        if real in self.roots:
            raise CallError(
                protocol.E_PATH_NOT_ALLOWED,
                "%s is an allowed root itself and cannot be removed; remove what is inside it"
                % path,
            )
        recursive = bool(args.get("recursive"))
        missing_ok = bool(args.get("missing_ok"))
        try:
            info = os.lstat(real)
        except FileNotFoundError:
            if missing_ok:
                return {"path": path, "removed": False}
            raise CallError(
                protocol.E_NOT_FOUND, "%s does not exist" % path, {"path": path}
            ) from None
        try:
            if stat.S_ISDIR(info.st_mode):
                if recursive:
                    import shutil  # imported here: it is slow to import and rarely needed

                    shutil.rmtree(real)
                else:
                    os.rmdir(real)
            else:
                os.unlink(real)
        except OSError as exc:
            raise os_error(exc, str(path), "remove") from None
        return {"path": path, "removed": True}
