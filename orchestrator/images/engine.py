"""What building images needs from a container engine: the seam between the builder and a backend.

The builder decides what to build and assembles images from files on the
host; only the engine can hold them.  ``ImageEngine`` names the few things
the builder asks of it: read the images it holds (``EngineImage``), tag and
remove them, load an assembled image archive, and, for ``--base IMAGE``, run
build containers (``BuildContainer``) and commit them.  The Docker backend
implements it (``orchestrator.backends.docker.image_engine``); an engine
behind another backend implements the same methods and gets the same builder.

Must not: import an engine client (docker-py) or ``orchestrator.backends``.
Implementations report failures as the ``orchestrator.errors`` tree
(``EngineError``, ``ImageBuildError``), never as their client's exceptions,
and never need a registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = [
    "BuildContainer",
    "BuildContainers",
    "EngineImage",
    "ImageEngine",
    "ImageSettings",
]


@dataclass(frozen=True)
class EngineImage:
    """An image the engine holds, reduced to what the builder reads of it."""

    id: str
    tags: tuple[str, ...] = ()
    """``repo:tag`` references that point at it."""
    labels: Mapping[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    """The ``diff_id`` of each layer, lowest first."""
    user: str | None = None
    size: int | None = None
    """Bytes, as the engine counts them."""
    created: datetime | None = None


@dataclass(frozen=True)
class ImageSettings:
    """How a container from the image starts: what every sandbox image is configured with.

    The command is the entrypoint alone (no ``Cmd``), so a sandbox always
    starts the guest.
    """

    user: str
    working_dir: str
    entrypoint: Sequence[str]
    env: Sequence[str]
    """``KEY=value`` items."""
    labels: Mapping[str, str]


class BuildContainer(Protocol):
    """A container that runs one build script; its changes become an image by ``commit``."""

    async def copy_in(self, directory: str, archive: bytes, *, what: str) -> None:
        """Unpack the tar ``archive`` at ``directory`` inside; ``what`` names it in errors."""
        ...

    async def start(self) -> None:
        """Start the script."""
        ...

    async def follow_output(
        self, on_output: Callable[[bytes], None], *, what: str, timeout: float
    ) -> None:
        """Pass the script's output to ``on_output`` (on the trio thread) until it exits."""
        ...

    async def wait(self, *, timeout: float) -> int:
        """The script's exit status, once it has exited."""
        ...

    async def output_tail(self, lines: int) -> str:
        """The last ``lines`` lines of the script's output (for an error message)."""
        ...

    async def commit(self, repo: str, tag: str, settings: ImageSettings, *, timeout: float) -> None:
        """Make the container's filesystem the image ``repo:tag``, configured by ``settings``."""
        ...


class BuildContainers(Protocol):
    """Where build containers are made, for the length of one build."""

    def create(
        self, parent: str, *, name: str, script: str
    ) -> AbstractAsyncContextManager[BuildContainer]:
        """A container from the image ``parent`` that runs ``/bin/sh -c script`` as root in ``/``.

        With the engine's default network: the script installs packages.
        Removed, forcibly, when the block ends, however it ends.
        """
        ...


class ImageEngine(Protocol):
    """The images an engine holds, and the ways the builder adds to them."""

    async def inspect_image(self, ref: str) -> EngineImage | None:
        """The image ``ref`` (``repo:tag`` or an id) names, or ``None`` if there is none."""
        ...

    async def tag_image(self, image: str, repo: str, tag: str) -> None:
        """Point ``repo:tag`` at ``image`` (an id or a reference)."""
        ...

    async def remove_image(self, ref: str, *, what: str) -> None:
        """Drop the reference ``ref``, and the image once nothing refers to it.

        ``EngineError`` when a container still uses the image; ``what``
        names the removal in that error.
        """
        ...

    async def image_tags(self, label: str) -> list[str]:
        """Every ``repo:tag`` of the images carrying ``label`` (``key=value``)."""
        ...

    def retried(self, operation: str, reason: str) -> None:
        """Count a retry of ``operation`` (``sbx_retries_total``): the builder retries
        a load the engine cut short."""
        ...

    async def load_image_archive(
        self,
        image: str,
        archive: Iterable[bytes],
        *,
        should_stop: Callable[[], bool],
        on_unpacking: Callable[[int, int], None],
        timeout: float,
    ) -> None:
        """Load the image ``image`` from a docker-save ``archive``, streamed.

        ``archive`` is consumed in a worker thread; ``on_unpacking(done,
        total)`` is called from that thread as the engine unpacks layers.
        Once ``should_stop()`` is true the load is abandoned quietly (the
        caller was cancelled).  ``ImageBuildError`` names what the engine
        refused.
        """
        ...

    def build_containers(
        self, *, long_call_timeout: float
    ) -> AbstractAsyncContextManager[BuildContainers]:
        """Build containers for one build; their slow calls may take ``long_call_timeout`` s.

        Following a build's output, waiting for it and committing a big
        layer stay silent longer than an ordinary engine call may; the
        build's own deadline bounds them.
        """
        ...

    async def aclose(self) -> None:
        """Let go of the engine connection."""
        ...
