"""The seam between sessions and container engines.

A backend knows *where* a sandbox runs (create, attach, start, stop, remove,
inspect, list by label) and nothing about *how* calls reach the guest: that is
the channel's job, over the stream ``attach`` returns.  The local Docker
Engine is the default; an in-memory fake sits beside it for unit tests, and a
cluster backend would be a third sibling passing the same conformance tests.
Engine types never cross this boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import trio

__all__ = [
    "LABEL_CLIENT",
    "LABEL_EXPIRES",
    "LABEL_MANAGED",
    "LABEL_OWNER",
    "LABEL_SESSION",
    "LABEL_SNAPSHOT",
    "LABEL_SNAPSHOT_CLIENT",
    "LABEL_SNAPSHOT_CREATED",
    "LABEL_SNAPSHOT_FILES",
    "LABEL_SNAPSHOT_PARENT",
    "LABEL_SNAPSHOT_PARTIAL",
    "LABEL_SNAPSHOT_SESSION",
    "LABEL_SUPERVISOR",
    "SNAPSHOT_FILES_ROOT",
    "BindMount",
    "EventSink",
    "ImageDefaults",
    "SandboxBackend",
    "SandboxEvent",
    "SandboxInfo",
    "SandboxSpec",
    "SnapshotBackend",
    "SnapshotCommit",
    "StderrSink",
    "is_gvisor",
    "root_refused",
]

LABEL_MANAGED = "io.sbx.managed"
LABEL_SESSION = "io.sbx.session"
LABEL_OWNER = "io.sbx.owner"
LABEL_SUPERVISOR = "io.sbx.supervisor"
LABEL_EXPIRES = "io.sbx.expires"
LABEL_CLIENT = "io.sbx.client"
"""Who the session is for (the HTTP API's token owner), distinct from the installation owner."""

LABEL_SNAPSHOT = "io.sbx.snapshot"
"""On a snapshot image: the snapshot's id (``sbx images ls`` and ``sbx gc --snapshots``
find snapshots by it)."""
LABEL_SNAPSHOT_PARENT = "io.sbx.snapshot.parent"
"""The image the snapshotted session ran."""
LABEL_SNAPSHOT_SESSION = "io.sbx.snapshot.session"
"""The id of the snapshotted session."""
LABEL_SNAPSHOT_CREATED = "io.sbx.snapshot.created"
"""When the snapshot was taken, Unix seconds."""
LABEL_SNAPSHOT_CLIENT = "io.sbx.snapshot.client"
"""Whom the snapshotted session was for (an API token's owner): only they may fork it."""
LABEL_SNAPSHOT_FILES = "io.sbx.snapshot.files"
"""Where in the image the tmpfs mounts' contents are kept, restored when a fork starts."""
LABEL_SNAPSHOT_PARTIAL = "io.sbx.snapshot.partial"
"""On the half-made image of a snapshot in progress (a snapshot id; empty once finished):
``sbx gc --snapshots`` removes those a cancelled snapshot left."""
SNAPSHOT_FILES_ROOT = "/.sbx-snapshot"
"""The hidden directory of a snapshot image holding its mounts' contents (one per snapshot)."""

StderrSink = Callable[[bytes], None]
"""Receives the guest's stderr (its JSON log lines) as it arrives."""


@dataclass(frozen=True)
class BindMount:
    """A host directory inside a sandbox.

    Only sbx itself adds these (the memory store at ``/memories``); no caller
    option reaches them, so a session cannot ask for a host path.
    """

    source: str
    """Absolute path on the engine's host."""
    target: str
    """Absolute path inside the sandbox."""
    read_only: bool = False


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to create one sandbox; hardening is the backend's duty."""

    image: str
    name: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    memory: int
    """Memory for the sandbox's processes; see ``memory_limit`` for the container's."""
    cpus: float
    pids_limit: int
    network: bool
    tmpfs: Mapping[str, int]
    user: str
    """Whom the guest runs everything as unless asked otherwise: ``uid[:gid]``, a name, or
    ``root``."""
    workdir: str
    runtime: str | None = None
    log_driver: str = "none"
    log_max_size: int = 1 << 20
    command: tuple[str, ...] | None = None
    """Overrides the image's command (not its entrypoint); ``None`` keeps it."""
    mounts: tuple[BindMount, ...] = ()
    """Host directories sbx mounts itself (never from caller options)."""
    shm_size: int = 64 << 20
    """Size of /dev/shm."""
    writable_root: bool = False
    """A writable root filesystem (its size kept under ``root_size`` by sbx)."""
    root_size: int = 0
    """The most a writable root may hold beyond its image, in bytes (0: no root changes)."""

    @property
    def limits_inside(self) -> bool:
        """Whether the guest enforces the pids and memory limits itself: under gVisor
        (a ``runsc`` runtime) the container's cgroups hold the gVisor kernel, not the
        user's processes, so the engine's limits are raised by its overhead instead."""
        return is_gvisor(self.runtime)

    @property
    def memory_limit(self) -> int:
        """The container's memory limit: processes, every tmpfs and /dev/shm together,
        because tmpfs pages count towards the container's memory (``sandbox_memory_limit``)."""
        return self.memory + sum(self.tmpfs.values()) + self.shm_size


def is_gvisor(runtime: str | None) -> bool:
    """Whether ``runtime`` (``sandbox.runtime``) is gVisor's ``runsc``."""
    return runtime is not None and ("runsc" in runtime or "gvisor" in runtime)


def root_refused(user: str | None, runtime: str | None) -> str | None:
    """Why ``user`` may not run commands under ``runtime``, or ``None`` when it may.

    Under gVisor root is refused: this runsc (Debian's, 2022) checks file modes, not
    ptrace access, when ``/proc/PID/fd`` is reopened, and root's descriptors-of-others
    access (owner or DAC_OVERRIDE) then reaches the guest's -- its channel to the host
    included (measured: a root command wrote frames into it).  Under runc the kernel's
    ptrace check refuses root as it refuses everyone.
    """
    if user is None or not is_gvisor(runtime):
        return None
    if user.partition(":")[0] not in ("root", "0"):
        return None
    return (
        f"commands cannot run as root ({user!r}) under gVisor (sandbox.runtime = "
        f"{runtime!r}): its /proc would let root reach the guest's channel; run as a "
        "non-root user, or use the default runtime (runc) for sessions that need root"
    )


@dataclass(frozen=True)
class SandboxInfo:
    """What a backend can tell about one sandbox, in engine-neutral terms."""

    id: str
    name: str
    image: str
    status: str
    labels: Mapping[str, str]
    created: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    """Hardening facts as applied: user, read_only, cap_drop, network_mode, ..."""


@dataclass(frozen=True)
class ImageDefaults:
    """An image's own settings that a session takes unless it asks otherwise."""

    workdir: str | None = None
    """``WORKDIR``; ``None`` where the image sets none (or ``/``)."""
    user: str | None = None
    """``USER``; ``None`` where the image sets none or root (root must be asked for)."""
    snapshot_files: str | None = None
    """For a snapshot: the directory (under ``SNAPSHOT_FILES_ROOT``) whose contents a fork
    copies into its tmpfs mounts before anything runs."""
    snapshot_client: str | None = None
    """For a snapshot: whom its session was for (``None``: local use)."""


@dataclass(frozen=True)
class SnapshotCommit:
    """What a snapshot image is made of, besides the sandbox's root changes."""

    repository: str
    tag: str
    labels: Mapping[str, str]
    """The snapshot's labels (``LABEL_SNAPSHOT``...)."""
    user: str
    """The image's ``USER``: the snapshotted session's user."""
    workdir: str
    files_archive: str
    """A tar on this host of the tmpfs mounts' contents, added to the image at ``/``."""


@dataclass(frozen=True)
class SandboxEvent:
    """What the engine says happened to a sandbox, outside any call of ours."""

    sandbox_id: str
    kind: Literal["died", "oom", "paused", "removed"]
    detail: str = ""
    """E.g. ``exit code 137`` for a sandbox that died."""


EventSink = Callable[[SandboxEvent], None]


@runtime_checkable
class SandboxBackend(Protocol):
    """One container engine."""

    name: str

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        """Create (not start) a sandbox whose exit removes it."""
        ...

    async def attach(self, sandbox_id: str, on_stderr: StderrSink) -> trio.abc.Stream:
        """The guest's stdin/stdout as one stream; must be called before ``start``."""
        ...

    async def start(self, sandbox_id: str) -> None: ...

    async def stop(self, sandbox_id: str, timeout: float = 5.0) -> None:
        """Stop (TERM, then KILL after ``timeout``); a gone sandbox is not an error."""
        ...

    async def remove(self, sandbox_id: str) -> None:
        """Remove by force; a gone sandbox is not an error."""
        ...

    async def inspect(self, sandbox_id: str) -> SandboxInfo: ...

    async def list(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        """Sandboxes carrying all of ``labels`` (running or not)."""
        ...

    async def image_exists(self, image: str) -> bool: ...

    async def root_usage(self, sandbox_id: str) -> int | None:
        """Bytes a sandbox wrote to its root filesystem; ``None`` where unknown."""
        ...

    async def image_defaults(self, image: str) -> ImageDefaults:
        """What the image says a container of it should be: its WORKDIR and USER.

        Raises ``ImageNotFound`` when the engine has no such image.
        """
        ...

    async def watch(
        self,
        labels: Mapping[str, str],
        on_event: EventSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Report what happens to sandboxes carrying ``labels`` until cancelled.

        ``task_status.started()`` once watching; returns or raises ``EngineError``
        when the engine ends the stream (the caller reconnects).
        """
        ...

    async def describe_engine(self) -> dict[str, Any]:
        """Version, storage driver, runtimes: for ``sbx doctor``. Raises if unreachable."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SnapshotBackend(Protocol):
    """A backend that can keep a sandbox's filesystem as a local image."""

    async def commit_snapshot(
        self, sandbox_id: str, commit: SnapshotCommit, *, timeout: float
    ) -> str:
        """The id of a new image: the sandbox's root as it is now, plus ``files_archive``.

        The sandbox keeps running (it is not paused).  Within ``timeout`` seconds, or
        ``EngineError``; nothing half-made is left behind on failure.
        """
        ...
