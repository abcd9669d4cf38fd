"""Where the memory tool's store lives on the host, and readying a namespace for a sandbox.

The store is a directory per namespace under one root (``memory.root``,
default ``$XDG_DATA_HOME/sbx/memories``).  A session mounts its namespace at
``/memories``, so memories outlive sessions and sessions of one namespace
share them.  Sessions opened for an owner (an HTTP API token's) get that
owner's own namespaces, under ``@OWNER/``, so tenants never share memories.
The sandbox user must be able to write the directory, which sbx arranges
when it creates it.  This module never reads or writes memories: the memory
tool does that inside the sandbox, through the guest.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from orchestrator.config import Config, MemoryConfig
from orchestrator.errors import ConfigError

__all__ = ["MEMORY_MOUNT", "memory_root", "namespace_dir", "prepare_namespace"]

MEMORY_MOUNT = "/memories"
"""Where a session sees its namespace of the store."""

log = structlog.get_logger("orchestrator.memory")


def memory_root(config: MemoryConfig) -> Path:
    """The configured root, else ``$XDG_DATA_HOME/sbx/memories`` (``~/.local/share/...``)."""
    if config.root is not None:
        return config.root.expanduser().resolve()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser().resolve() / "sbx" / "memories"


def _plain(name: str, what: str) -> str:
    if not name or set(name) <= {"."} or "/" in name or "\0" in name:
        raise ConfigError(f"{what} {name!r} is not a plain name such as 'default'")
    return name


def namespace_dir(
    config: MemoryConfig, namespace: str | None = None, owner: str | None = None
) -> Path:
    """The directory of one namespace (which may not exist yet), the owner's own if given."""
    name = _plain(namespace or config.namespace, "memory namespace")
    root = memory_root(config)
    if owner is not None:
        # Namespaces cannot start with "@", so an owner's directory never collides with one.
        root = root / ("@" + _plain(owner, "session owner"))
    return root / name


def _sandbox_ids(user: str) -> tuple[int, int] | None:
    uid, _, gid = user.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        return None


def prepare_namespace(
    config: Config, namespace: str | None = None, owner: str | None = None
) -> Path:
    """Create the namespace's directory if needed, writable by the sandbox user; return it.

    Blocking file-system work: call it from a worker thread.  The directory is
    made the sandbox user's when sbx runs as root; when sbx runs as that same
    user nothing is needed; otherwise the directory is opened to everyone,
    which is safe because the root above it stays private (mode 0700).
    """
    path = namespace_dir(config.memory, namespace, owner)
    root = path.parent
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        if path.is_symlink() or not path.is_dir():
            raise ConfigError(
                f"memory store {path} is not a plain directory; remove it or set memory.root "
                "to another directory"
            )
        ids = _sandbox_ids(config.sandbox.user)
        info = path.stat()
        if ids is not None and info.st_uid == ids[0]:
            return path
        if ids is not None and os.geteuid() == 0:
            os.chown(path, ids[0], ids[1])
            return path
        if info.st_mode & 0o777 != 0o777:
            os.chmod(path, 0o777)
            log.warning(
                "memory store opened to every user so the sandbox user can write it; keep its "
                "parent private, or run sbx as the sandbox user or root",
                path=str(path),
            )
    except OSError as exc:
        raise ConfigError(
            f"cannot prepare the memory store {path}: {exc.strerror or exc}; set memory.root to a "
            "directory sbx may write, or open the session with memories=False"
        ) from None
    return path
