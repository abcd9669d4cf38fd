"""Options plus configuration, turned into the sandbox a session gets: the one place.

A session's options leave most things unset; the configuration fills them
in.  ``resolve_shape`` does that once, into a ``SandboxShape``: everything
that makes two sandboxes interchangeable.  A session turns its shape into
the backend's ``SandboxSpec`` with ``build_spec`` (adding its name and
labels), and the pool compares shapes (``sandbox_key``) to decide whether a
spare is exactly what a request would have made -- the same function on
both sides, so the two can never drift apart.

Must not: start anything, touch the engine, or know about sessions' state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from orchestrator.backends.base import (
    LABEL_CLIENT,
    LABEL_EXPIRES,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_SESSION,
    LABEL_SUPERVISOR,
    BindMount,
    ImageDefaults,
    SandboxSpec,
    root_refused,
)
from orchestrator.config import Config
from orchestrator.errors import OptionNotAllowed
from orchestrator.options import SandboxOptions

__all__ = [
    "MemoryStoreMount",
    "SandboxShape",
    "build_spec",
    "resolve_shape",
    "sandbox_key",
    "with_image_defaults",
]


@dataclass(frozen=True)
class MemoryStoreMount:
    """Which namespace of the memory store the session's memory tool edits, and for whom
    (never mounted: ``orchestrator.memory_guest``)."""

    owner: str | None
    namespace: str


@dataclass(frozen=True)
class SandboxShape:
    """A sandbox as options and configuration resolve it, before it has a name.

    Hashable: two requests with equal shapes would make interchangeable
    sandboxes.
    """

    image: str
    memory: int
    cpus: float
    pids_limit: int
    network: bool
    env: tuple[tuple[str, str], ...]
    workdir: str
    tmpfs: tuple[tuple[str, int], ...]
    shm_size: int
    user: str
    writable_root: bool
    root_size: int
    runtime: str | None
    log_driver: str
    log_max_size: int
    screen: str | None
    desktop: bool | None
    memory_store: MemoryStoreMount | None


def resolve_shape(options: SandboxOptions, config: Config, owner: str | None) -> SandboxShape:
    """The sandbox ``options`` ask for, every unset choice taken from ``config``."""
    sandbox = config.sandbox
    wants_store = config.memory.enabled if options.memories is None else options.memories
    store = (
        MemoryStoreMount(owner, options.memory_namespace or config.memory.namespace)
        if wants_store
        else None
    )
    memory = options.memory or sandbox.memory
    refused = root_refused(options.user or sandbox.user, sandbox.runtime)
    if refused is not None:
        raise OptionNotAllowed(refused)
    return SandboxShape(
        image=config.image_name(options.image or sandbox.image),
        memory=memory,
        cpus=options.cpus or sandbox.cpus,
        pids_limit=options.pids_limit or sandbox.pids_limit,
        network=sandbox.network if options.network is None else options.network,
        env=tuple(sorted({**sandbox.env, **options.env}.items())),
        workdir=options.workdir or sandbox.workdir,
        tmpfs=tuple(sorted(sandbox.tmpfs_for(memory, options.tmpfs_sizes).items())),
        shm_size=sandbox.shm_size,
        user=options.user or sandbox.user,
        writable_root=sandbox.writable_root
        if options.writable_root is None
        else options.writable_root,
        root_size=sandbox.root_size,
        runtime=sandbox.runtime,
        log_driver=sandbox.log_driver,
        log_max_size=sandbox.log_max_size,
        screen=options.screen,
        desktop=options.desktop,
        memory_store=store,
    )


def with_image_defaults(
    shape: SandboxShape, options: SandboxOptions, defaults: ImageDefaults
) -> SandboxShape:
    """The shape once the image is known: its WORKDIR and (non-root) USER are the defaults
    where the session asked for none."""
    return dataclasses.replace(
        shape,
        workdir=options.workdir or defaults.workdir or shape.workdir,
        user=options.user or defaults.user or shape.user,
    )


def sandbox_key(
    options: SandboxOptions, config: Config, owner: str | None = None
) -> SandboxShape | None:
    """What the sandbox of ``options`` would be for ``owner``; ``None`` where no spare can serve.

    Labels are written on the container when it is created, so requests with
    labels never match.  The memory store is mounted then too, by owner and
    namespace, so those are part of the shape when the store is asked for.
    """
    if options.labels:
        return None
    return resolve_shape(options, config, owner)


def build_spec(
    shape: SandboxShape,
    *,
    session_id: str,
    supervisor: str,
    installation: str,
    expires: float,
    client: str | None,
    labels: dict[str, str],
    mounts: tuple[BindMount, ...] = (),
) -> SandboxSpec:
    """The backend's spec for a session's sandbox: the shape, a name, and sbx's labels.

    ``supervisor`` is the running supervisor's identity and ``installation``
    the configured owner (both read by the orphan reaper); ``expires`` is a
    Unix time after which any supervisor may remove the sandbox; ``client``
    is whom the session is for (an API token's owner).
    """
    all_labels = {
        **labels,
        LABEL_MANAGED: "true",
        LABEL_SESSION: session_id,
        LABEL_OWNER: installation,
        LABEL_SUPERVISOR: supervisor,
        LABEL_EXPIRES: str(int(expires)),
    }
    if client is not None:
        all_labels[LABEL_CLIENT] = client
    return SandboxSpec(
        image=shape.image,
        name=f"sbx-{session_id}",
        labels=all_labels,
        env=dict(shape.env),
        memory=shape.memory,
        cpus=shape.cpus,
        pids_limit=shape.pids_limit,
        network=shape.network,
        tmpfs=dict(shape.tmpfs),
        shm_size=shape.shm_size,
        user=shape.user,
        workdir=shape.workdir,
        writable_root=shape.writable_root,
        root_size=shape.root_size,
        runtime=shape.runtime,
        log_driver=shape.log_driver,
        log_max_size=shape.log_max_size,
        mounts=mounts,
    )
