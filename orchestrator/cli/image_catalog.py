"""``sbx images ls`` and ``sbx images rm``: every image a session may run, and removing them.

``ls`` shows sbx's own images against their recipes (current, stale or
missing), then every named image of the engine: sbx's, snapshots (with the
image and session they were taken of) and users' own.  ``rm`` removes images
by name; ``sbx gc --snapshots`` removes old snapshots by age.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

import trio

from orchestrator.config import Config
from orchestrator.errors import SbxError

if TYPE_CHECKING:
    from orchestrator.images.builder import ImageBuilder
    from orchestrator.images.catalog import ImageCatalog

__all__ = ["collect_old_snapshots", "list_all_images", "register_rm"]


def register_rm(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rm = actions.add_parser("rm", help="remove images by name (snapshots, your own images)")
    rm.add_argument("names", nargs="+", metavar="NAME", help="image names or ids")
    rm.add_argument("--force", action="store_true", help="also remove sbx's own images")
    rm.set_defaults(handler=lambda args, config: trio.run(remove, config, args.names, args.force))


def _catalog(config: Config) -> tuple[ImageBuilder, ImageCatalog]:
    from orchestrator.backends.registry import make_image_builder
    from orchestrator.images.catalog import ImageCatalog

    builder = make_image_builder(config)
    engine = builder.engine
    if not isinstance(engine, ImageCatalog):
        raise SbxError(f"the {config.engine.backend} backend cannot list its images")
    return builder, engine


def _age(created: datetime | None) -> str:
    if created is None:
        return "-"
    seconds = max(0.0, time.time() - created.timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


async def list_all_images(config: Config, as_json: bool) -> int:
    from orchestrator.images.catalog import list_catalog

    builder, engine = _catalog(config)
    try:
        statuses = await builder.status()
        entries = await list_catalog(engine, prefix=config.images.prefix)
    finally:
        await builder.aclose()
    if as_json:
        print(
            json.dumps(
                {
                    "recipes": [status.model_dump(mode="json") for status in statuses],
                    "images": [entry.model_dump(mode="json") for entry in entries],
                }
            )
        )
        return 0
    print(f"{'NAME':<13} {'IMAGE':<24} {'SIZE':>9}  {'RECIPE':<12}  STATE")
    for status in statuses:
        size = f"{status.size / 1e6:.0f} MB" if status.size else "-"
        state = "current" if status.current else ("stale" if status.present else "missing")
        print(
            f"{status.name:<13} {status.image:<24} {size:>9}  "
            f"{(status.image_hash or status.expected_hash)[:12]:<12}  {state}"
        )
    print()
    print(f"{'KIND':<9} {'IMAGE':<40} {'SIZE':>9}  {'CREATED':<10}  FROM")
    for entry in entries:
        size = f"{entry.size / 1e6:.0f} MB" if entry.size else "-"
        origin = f"session {entry.session} of {entry.parent}" if entry.kind == "snapshot" else ""
        print(f"{entry.kind:<9} {entry.image:<40} {size:>9}  {_age(entry.created):<10}  {origin}")
    return 0


async def remove(config: Config, names: list[str], force: bool) -> int:
    from orchestrator.images.catalog import remove_images

    builder, engine = _catalog(config)
    try:
        removed = await remove_images(engine, names, force=force, prefix=config.images.prefix)
    except SbxError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1
    finally:
        await builder.aclose()
    for name in removed:
        print(f"removed {name}")
    return 0


async def collect_old_snapshots(config: Config, older_than: float) -> list[str]:
    """Remove this installation's snapshots (``<images.prefix>snapshot:*``) older than
    ``older_than`` seconds, and half-made leftovers."""
    from orchestrator.images.catalog import collect_snapshots
    from orchestrator.snapshots import snapshot_repository

    builder, engine = _catalog(config)
    try:
        return await collect_snapshots(
            engine,
            older_than,
            repository=snapshot_repository(config),
            partial_after=config.session.snapshot_timeout + 60,
        )
    finally:
        await builder.aclose()
