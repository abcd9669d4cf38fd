"""The host cache of bootstrapped layers: a root recipe's rootfs tar, a child's delta over it.

An entry lives in ``<cache_dir>/rootfs/<name>-<key>/`` (``layer.tar`` and
``meta.json``, which is written last and marks the entry complete).  Its key
hashes everything that goes into the rootfs but the guest and the env: the
builder's format, mmdebstrap's fixed options, the architecture, the apt
sources, and each recipe's packages and files.  So a guest-only change
re-assembles images from cached layers, and ``RootfsCache`` bootstraps (and
cuts a delta) only on a miss or a forced build.

Must not: talk to the engine (``image_load`` does), or delete entries of
images other than the ones a build used (``prune`` leaves those alone).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from orchestrator.config import ImagesConfig
from orchestrator.images.build_run import BuildRun, BuildTarget, now_rfc3339
from orchestrator.images.image_contents import recipe_chain
from orchestrator.images.layer_delta import LayerIndex, index_tar, plan_delta, write_delta
from orchestrator.images.layer_files import LayerFile, file_layer
from orchestrator.images.mmdebstrap import bootstrap, fixed_options, prepare_sources
from orchestrator.images.models import BuildStage
from orchestrator.images.recipes import ImageRecipe

__all__ = ["BUILDER_FORMAT", "CacheEntry", "RootfsCache", "drop_entry"]

log = structlog.get_logger("orchestrator.images")

BUILDER_FORMAT = 1
"""Part of every cache key: bump it when the way rootfs tars or deltas are made changes."""


@dataclass(frozen=True)
class CacheEntry:
    """A cached mmdebstrap result: a rootfs tar (root recipes) or a delta (children)."""

    directory: Path
    key: str
    layer: LayerFile
    epoch: int


def drop_entry(entry: CacheEntry) -> None:
    """Remove a damaged entry (blocking file IO: run it in a thread)."""
    shutil.rmtree(entry.directory, ignore_errors=True)


def _rootfs_key(run: BuildRun, chain: Sequence[ImageRecipe], extra: str = "") -> str:
    """Hash of what goes into a bootstrapped rootfs: everything but the guest and env."""
    spec: list[dict[str, Any]] = []
    for recipe in chain:
        files = {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(recipe.directory.iterdir())
            if path.is_file() and path.name != "recipe.yaml"
        }
        spec.append({"name": recipe.name, "packages": list(recipe.packages), "files": files})
    document = {
        "format": BUILDER_FORMAT,
        "options": fixed_options(),
        "arch": run.arch,
        "sources": run.sources_digest,
        "chain": spec,
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class RootfsCache:
    """Bootstrapped layers under ``cache_dir``, made with mmdebstrap when missing."""

    def __init__(self, cache_dir: Path, config: ImagesConfig) -> None:
        self.cache_dir = cache_dir
        self.config = config

    # ---------------------------------------------------------------- entries (blocking)

    def _entry_dir(self, name: str, key: str) -> Path:
        return self.cache_dir / "rootfs" / f"{name}-{key[:24]}"

    def _read_entry(self, name: str, key: str) -> CacheEntry | None:
        directory = self._entry_dir(name, key)
        try:
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            layer_path = directory / "layer.tar"
            if meta.get("key") != key or layer_path.stat().st_size != meta["size"]:
                return None
            return CacheEntry(
                directory=directory,
                key=key,
                layer=LayerFile(path=layer_path, diff_id=meta["diff_id"], size=meta["size"]),
                epoch=int(meta["epoch"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store_entry(
        self, name: str, key: str, layer: LayerFile, epoch: int, run_tmp: Path
    ) -> CacheEntry:
        """Move a finished layer into the cache atomically (meta.json marks it complete)."""
        staging = Path(tempfile.mkdtemp(prefix=f"entry-{name}-", dir=run_tmp))
        os.replace(layer.path, staging / "layer.tar")
        meta = {
            "key": key,
            "name": name,
            "diff_id": layer.diff_id,
            "size": layer.size,
            "epoch": epoch,
            "created": now_rfc3339(),
            "format": BUILDER_FORMAT,
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        final = self._entry_dir(name, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        return CacheEntry(
            directory=final,
            key=key,
            layer=LayerFile(path=final / "layer.tar", diff_id=layer.diff_id, size=layer.size),
            epoch=epoch,
        )

    def prune(self, keep: dict[str, str]) -> None:
        """Remove other cache entries of the images this build used (old keys)."""
        root = self.cache_dir / "rootfs"
        if not root.is_dir():
            return
        keep_dirs = {self._entry_dir(name, key).name for name, key in keep.items()}
        for child in root.iterdir():
            name = child.name.rsplit("-", 1)[0]
            if name in keep and child.name not in keep_dirs:
                log.info("pruning an old image cache entry", path=str(child))
                shutil.rmtree(child, ignore_errors=True)

    # ---------------------------------------------------------------- layers (async)

    async def root_entry(
        self, run: BuildRun, target: BuildTarget, *, reuse: bool
    ) -> tuple[CacheEntry, bool]:
        """The root recipe's rootfs tar: (entry, came from the cache)."""
        await prepare_sources(run, self.config)
        chain = [target.recipe]
        key = await trio.to_thread.run_sync(_rootfs_key, run, chain)
        if reuse:
            entry = await trio.to_thread.run_sync(self._read_entry, target.name, key)
            if entry is not None:
                run.used_entries[target.name] = key
                return entry, True
        epoch = int(time.time())
        out = run.tmp / f"{target.name}.rootfs.tar"
        async with run.bootstrap_limiter:
            await bootstrap(run, target.name, chain, out, epoch)
        run.emit(target.name, BuildStage.COMPUTING_LAYER, "hashing the rootfs layer")
        layer = await trio.to_thread.run_sync(file_layer, out)
        entry = await trio.to_thread.run_sync(
            self._store_entry, target.name, key, layer, epoch, run.tmp
        )
        run.used_entries[target.name] = key
        return entry, False

    async def cached_root_entry(self, run: BuildRun, target: BuildTarget) -> CacheEntry | None:
        await prepare_sources(run, self.config)
        key = await trio.to_thread.run_sync(_rootfs_key, run, [target.recipe])
        entry = await trio.to_thread.run_sync(self._read_entry, target.name, key)
        if entry is not None:
            run.used_entries[target.name] = key
        return entry

    async def _base_index(self, run: BuildRun, image: str, entry: CacheEntry) -> LayerIndex:
        """The root rootfs's index, computed once per build and shared by its children."""
        async with run.index_lock:
            index = run.base_indexes.get(entry.key)
            if index is None:
                run.emit(image, BuildStage.COMPUTING_LAYER, "indexing the base rootfs")
                index = await trio.to_thread.run_sync(index_tar, entry.layer.path)
                run.base_indexes[entry.key] = index
            return index

    async def delta_entry(
        self, run: BuildRun, target: BuildTarget, root: CacheEntry
    ) -> tuple[CacheEntry, bool]:
        """The child's delta over the root rootfs: (entry, came from the cache)."""
        chain = recipe_chain(target.recipe)
        key = await trio.to_thread.run_sync(
            functools.partial(_rootfs_key, run, chain, extra=root.layer.diff_id)
        )
        if not target.force:
            entry = await trio.to_thread.run_sync(self._read_entry, target.name, key)
            if entry is not None:
                run.used_entries[target.name] = key
                return entry, True
        full = run.tmp / f"{target.name}.rootfs.tar"
        try:
            if run.bootstrap_limiter.available_tokens == 0:
                run.emit(target.name, BuildStage.WAITING, "waiting for a bootstrap slot")
            async with run.bootstrap_limiter:
                await bootstrap(run, target.name, chain, full, root.epoch)
            base_index = await self._base_index(run, target.name, root)
            run.emit(target.name, BuildStage.COMPUTING_LAYER, "indexing the full rootfs")
            derived_index = await trio.to_thread.run_sync(index_tar, full)
            plan = plan_delta(base_index, derived_index)
            run.emit(
                target.name,
                BuildStage.COMPUTING_LAYER,
                f"writing the delta: {plan.changed} entries changed, {len(plan.whiteouts)} removed",
            )
            layer = await trio.to_thread.run_sync(
                functools.partial(
                    write_delta,
                    full,
                    plan,
                    run.tmp / f"{target.name}.delta.tar",
                    whiteout_mtime=root.epoch,
                )
            )
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(functools.partial(full.unlink, missing_ok=True))
        log.info(
            "computed a delta layer",
            image=target.name,
            changed=plan.changed,
            whiteouts=len(plan.whiteouts),
            bytes=layer.size,
        )
        entry = await trio.to_thread.run_sync(
            self._store_entry, target.name, key, layer, root.epoch, run.tmp
        )
        run.used_entries[target.name] = key
        return entry, False
