"""The images a session can run, as ``sbx images ls|rm`` and ``sbx gc --snapshots`` see them.

Three kinds: sbx's own (built from a recipe, labelled ``io.sbx.image``),
snapshots of sessions (labelled ``io.sbx.snapshot``, with their parent image
and session) and everything else the engine holds under a name -- images
users built or loaded themselves, which sessions run too.

Removal is by name; sbx's own images need ``force`` (``sbx images build``
makes them again, but every session of them would have to wait for it).
Old snapshots go by age; so do half-made ones a cancelled snapshot left
(labelled ``io.sbx.snapshot.partial``), once older than the snapshot
deadline, so a snapshot still being taken is never touched.

Must not: import an engine client or ``orchestrator.backends``; the engine
is reached through ``ImageCatalog``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import ConfigError, EngineError, ImageNotFound
from orchestrator.images.engine import EngineImage
from orchestrator.images.recipes import LABEL_IMAGE, LABEL_RECIPE_HASH

__all__ = [
    "LABEL_SNAPSHOT_CREATED",
    "CatalogEntry",
    "ImageCatalog",
    "collect_snapshots",
    "list_catalog",
    "parse_duration",
    "remove_images",
]

# The snapshot labels (``orchestrator.backends.base`` names them for the backends; the
# images layer sits below the backends and keeps its own spelling of the same strings).
LABEL_SNAPSHOT = "io.sbx.snapshot"
LABEL_SNAPSHOT_PARENT = "io.sbx.snapshot.parent"
LABEL_SNAPSHOT_SESSION = "io.sbx.snapshot.session"
LABEL_SNAPSHOT_CREATED = "io.sbx.snapshot.created"
LABEL_SNAPSHOT_PARTIAL = "io.sbx.snapshot.partial"

ImageKind = Literal["sbx", "snapshot", "user"]


@runtime_checkable
class ImageCatalog(Protocol):
    """What listing and removing images needs of an engine."""

    async def list_images(self) -> list[EngineImage]:
        """Every image the engine holds (tagged or not), with labels, size and time."""
        ...

    async def remove_image(self, ref: str, *, what: str) -> None: ...


class CatalogEntry(BaseModel):
    """One image a session may name (``sbx images ls``)."""

    model_config = ConfigDict(frozen=True)

    image: str = Field(description="Its name (repo:tag).")
    id: str
    kind: ImageKind
    size: int | None = Field(default=None, description="Bytes, as the engine counts them.")
    created: datetime | None = None
    parent: str | None = Field(default=None, description="A snapshot's parent image.")
    session: str | None = Field(default=None, description="The session a snapshot was taken of.")


def _kind(image: EngineImage, prefix: str) -> ImageKind:
    """A snapshot by its label; sbx's own by its recipe label *and* its name (an image built
    ``FROM sbx-code-runner`` inherits the label but is the user's)."""
    if image.labels.get(LABEL_SNAPSHOT):
        return "snapshot"
    recipe = image.labels.get(LABEL_IMAGE)
    if recipe and any(tag.rpartition(":")[0] == f"{prefix}{recipe}" for tag in image.tags):
        return "sbx"
    return "user"


def _created(image: EngineImage) -> float:
    stamp = image.labels.get(LABEL_SNAPSHOT_CREATED) or ""
    if stamp.isdigit():
        return float(stamp)
    return image.created.timestamp() if image.created is not None else 0.0


def _shown(tag: str, image: EngineImage) -> bool:
    """Not ``<none>``, and not the recipe-hash tag sbx keeps beside ``latest``."""
    recipe = image.labels.get(LABEL_RECIPE_HASH) or ""
    return tag != "<none>:<none>" and not (recipe and tag.endswith(":" + recipe[:12]))


def _named(images: Sequence[EngineImage]) -> list[tuple[str, EngineImage]]:
    return sorted(
        ((tag, image) for image in images for tag in image.tags if _shown(tag, image)),
        key=lambda pair: pair[0],
    )


async def list_catalog(engine: ImageCatalog, *, prefix: str = "sbx-") -> list[CatalogEntry]:
    """Every named image: sbx's, snapshots, and users' (one row per name, but for the
    recipe-hash tags of sbx's own, which ``sbx images ls`` shows as RECIPE)."""
    rows = []
    for tag, image in _named(await engine.list_images()):
        kind = _kind(image, prefix)
        rows.append(
            CatalogEntry(
                image=tag,
                id=image.id,
                kind=kind,
                size=image.size,
                created=image.created,
                parent=image.labels.get(LABEL_SNAPSHOT_PARENT) if kind == "snapshot" else None,
                session=image.labels.get(LABEL_SNAPSHOT_SESSION) if kind == "snapshot" else None,
            )
        )
    kinds: list[ImageKind] = ["sbx", "snapshot", "user"]
    return sorted(rows, key=lambda row: (kinds.index(row.kind), row.image))


def _matches(name: str, image: EngineImage) -> bool:
    """``name`` is one of the image's names, or at least 12 digits of its id."""
    if name in image.tags or f"{name}:latest" in image.tags:
        return True
    digits = name.removeprefix("sha256:")
    return len(digits) >= 12 and image.id.removeprefix("sha256:").startswith(digits)


async def remove_images(
    engine: ImageCatalog, names: Sequence[str], *, force: bool, prefix: str = "sbx-"
) -> list[str]:
    """Remove the images ``names`` (names or ids); what was removed, in order.

    ``ImageNotFound`` for a name the engine does not know; sbx's own images only
    with ``force``; an image a container still uses is the engine's ``EngineError``.
    """
    images = await engine.list_images()
    removed = []
    for name in names:
        match = next((image for image in images if _matches(name, image)), None)
        if match is None:
            raise ImageNotFound(name)
        if _kind(match, prefix) == "sbx" and not force:
            raise ConfigError(
                f"{name} is one of sbx's own images; sessions of it would wait for "
                "`sbx images build` to make it again. Add --force to remove it anyway"
            )
        await engine.remove_image(name, what=f"removing image {name}")
        removed.append(name)
    return removed


async def collect_snapshots(
    engine: ImageCatalog,
    older_than: float,
    *,
    repository: str,
    partial_after: float,
    now: float | None = None,
) -> list[str]:
    """Remove the snapshots in ``repository`` taken more than ``older_than`` seconds ago,
    and half-made ones older than ``partial_after``; the names (or ids) removed.  One that
    a container still uses is kept (and not listed)."""
    now = time.time() if now is None else now
    removed = []
    for image in await engine.list_images():
        partial = image.labels.get(LABEL_SNAPSHOT_PARTIAL)
        if image.labels.get(LABEL_SNAPSHOT):
            if now - _created(image) < older_than:
                continue
            refs = [tag for tag in image.tags if tag.rpartition(":")[0] == repository]
        elif partial:
            if now - _created(image) < partial_after:
                continue
            refs = [image.id]
        else:
            continue
        for ref in refs:
            try:
                await engine.remove_image(ref, what=f"removing snapshot {ref}")
            except EngineError:
                break  # in use by a fork: kept until it is not
            removed.append(ref)
    return removed


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``1w`` or plain seconds, as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise ConfigError(
            f"{text!r} is not a duration; write a number with a unit: 45s, 30m, 12h, 7d, 1w"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
