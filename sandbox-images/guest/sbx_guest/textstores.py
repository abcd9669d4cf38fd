"""Where edited files live: under the allowed roots, or in the memory store at /memories.

The memory store is a host directory mounted into the sandbox: edits there
are confined to it (neither ``..`` nor a symbolic link leads out), capped in
total size, and serialised with an exclusive ``flock`` on its directory, so
sandboxes sharing a namespace take turns.  This module resolves and guards
paths; it does not edit.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from typing import Optional

from . import protocol
from .errors import CallError
from .files import FileService, walk_tree

MEMORY_MOUNT = "/memories"
LOCK_WAIT = 5.0
"""How long an edit of the memory store waits for another sandbox's edit to finish."""


def mount_source(target: str) -> str:
    """Where a mount target really is.

    In a sandbox that is the target itself.  The in-memory test backend runs
    the guest on the host and announces its stand-ins for mounts in
    ``SBX_PATH_MAP`` (a JSON object, target -> directory).
    """
    try:
        mapping = json.loads(os.environ.get("SBX_PATH_MAP") or "{}")
    except ValueError:
        mapping = {}
    source = mapping.get(target) if isinstance(mapping, dict) else None
    return str(source) if source else target


class FileStore:
    """Paths under the allowed roots, as the model gives them."""

    name = "files"

    def __init__(self, files: FileService) -> None:
        self.files = files

    def real(self, path: object, *, follow_final: bool = True) -> str:
        return self.files.resolve(path, follow_final=follow_final)

    def shown(self, real: str, path: str) -> str:
        return path

    def lock(self) -> "Optional[StoreLock]":
        return None

    def check_room(self, growth: int) -> None:
        return None


class StoreLock:
    """An exclusive ``flock`` on the store's directory: sandboxes sharing a store take turns."""

    def __init__(self, root: str) -> None:
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(self.fd)
                    raise
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise CallError(
                        protocol.E_BUSY,
                        "the memory store is being changed by another session; retry",
                    ) from None
                time.sleep(0.01)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = -1


class MemoryStore:
    """The memory store: ``/memories`` paths, confined to the mounted directory, size-capped."""

    name = "memories"

    def __init__(self, max_file: int, max_bytes: int) -> None:
        self.root = os.path.realpath(mount_source(MEMORY_MOUNT))
        if not os.path.isdir(self.root):
            raise CallError(
                protocol.E_NOT_FOUND,
                "this sandbox has no memory store at %s: the session was opened without one"
                % MEMORY_MOUNT,
                {"path": MEMORY_MOUNT, "reason": "no_store"},
            )
        self.files = FileService([self.root], max_file)
        self.max_bytes = max_bytes

    def real(self, path: object, *, follow_final: bool = True) -> str:
        if not isinstance(path, str) or not path:
            raise CallError(protocol.E_BAD_REQUEST, "'path' must be a non-empty string")
        normal = os.path.normpath(path) if path.startswith("/") else path
        if normal != MEMORY_MOUNT and not normal.startswith(MEMORY_MOUNT + "/"):
            raise CallError(
                protocol.E_PATH_NOT_ALLOWED,
                "%s is outside %s" % (path, MEMORY_MOUNT),
                {"path": path, "reason": "outside"},
            )
        inner = self.root + normal[len(MEMORY_MOUNT) :]
        try:
            return self.files.resolve(inner, follow_final=follow_final)
        except CallError as exc:
            if exc.code == protocol.E_PATH_NOT_ALLOWED:
                raise CallError(
                    protocol.E_PATH_NOT_ALLOWED,
                    "%s leads out of %s through a symbolic link" % (path, MEMORY_MOUNT),
                    {"path": path, "reason": "symlink"},
                ) from None
            raise

    def shown(self, real: str, path: str) -> str:
        if real == self.root:
            return MEMORY_MOUNT
        return MEMORY_MOUNT + real[len(self.root) :]

    def lock(self) -> StoreLock:
        return StoreLock(self.root)

    def usage(self) -> int:
        return sum(info.st_size for _, info in walk_tree(self.root))

    def check_room(self, growth: int) -> None:
        if growth <= 0:
            return
        used = self.usage()
        if used + growth > self.max_bytes:
            raise CallError(
                protocol.E_STORE_FULL,
                "the memory store holds %d of its %d bytes; this change needs %d more"
                % (used, self.max_bytes, growth),
                {"used": used, "limit": self.max_bytes, "needed": growth},
            )
