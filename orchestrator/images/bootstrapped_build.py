"""The mmdebstrap build path: a root image from a bootstrapped rootfs, its children as deltas.

* ``sbx-base`` = [mmdebstrap rootfs, guest].  The rootfs tar comes straight
  from ``mmdebstrap --variant=minbase`` with the host's Debian sources; the
  guest (``/opt/sbx/guest``) is its own small, deterministic top layer so a
  change to the guest's code never reruns mmdebstrap.
* a derived image (``parent: base``) = [base rootfs, guest, delta].  Its
  full rootfs is bootstrapped by mmdebstrap with the base's packages plus its
  own and the same hooks, under the base's ``SOURCE_DATE_EPOCH`` so that
  untouched files compare equal; ``layer_delta.write_delta`` keeps only what
  differs.  The image is assembled as a docker-save archive and loaded, so it
  really is FROM ``sbx-base`` (its layers start with the base's).
* the bootstrapped layers come from ``rootfs_cache`` (made on a miss), and
  ``image_load`` puts the assembled image on the engine.

A root is rebuilt when it is stale, or when its stale children could not
share its layers otherwise; its children are then built concurrently, and
the first failure cancels the rest.

Must not: run a package install inside a container (``container_build``
does, for ``--base IMAGE``), or reach the engine other than through
``ImageEngine``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio

from orchestrator.config import ImagesConfig
from orchestrator.errors import ImageBuildError
from orchestrator.images.build_run import BuildRun, BuildTarget
from orchestrator.images.engine import ImageEngine
from orchestrator.images.engine_images import ensure_tags
from orchestrator.images.guest_bundle import BUNDLE_DIR
from orchestrator.images.image_contents import recipe_chain
from orchestrator.images.image_load import ImageLoader, sbx_layer
from orchestrator.images.layer_files import LayerFile
from orchestrator.images.recipes import load_recipe
from orchestrator.images.rootfs_cache import CacheEntry, RootfsCache

__all__ = ["BootstrappedBuilds"]


async def _run_all(jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run jobs concurrently; the first failure cancels the rest and is raised alone."""
    failures: list[Exception] = []
    async with trio.open_nursery() as nursery:

        async def one(job: Callable[[], Awaitable[None]]) -> None:
            try:
                await job()
            except Exception as exc:
                if not failures:
                    failures.append(exc)
                nursery.cancel_scope.cancel()

        for job in jobs:
            nursery.start_soon(one, job)
    if failures:
        raise failures[0]


class BootstrappedBuilds:
    """Builds the stale images of a build from mmdebstrap layers cached under ``cache_dir``."""

    def __init__(self, engine: ImageEngine, config: ImagesConfig, cache_dir: Path) -> None:
        self.engine = engine
        self.config = config
        self.cache_dir = cache_dir

    async def build_all(self, run: BuildRun, targets: list[BuildTarget]) -> None:
        """Build what is stale among ``targets``: a root recipe first, then its children at once.

        Current images only get their hash tag checked.
        """
        by_name = {t.name: t for t in targets}
        for target in targets:
            parent = target.recipe.parent
            if parent and load_recipe(parent).parent:
                raise ImageBuildError(
                    f"image {target.name} builds on {parent}, which has a parent itself; "
                    "bootstrapped images may only be one level above a root recipe — point "
                    f"{target.name}'s `parent:` at base, or build with `--base IMAGE`"
                )
        cache = RootfsCache(self.cache_dir, self.config)
        roots = [t for t in targets if not t.recipe.parent]
        for root in roots:
            children = [t for t in targets if t.recipe.parent == root.name]
            stale = [c for c in children if c.force or not c.current]
            for child in children:
                if child not in stale:
                    started = trio.current_time()
                    await ensure_tags(self.engine, child)
                    run.finish(child, started, built=False)
            await self._build_root_and_children(run, cache, root, stale)
        missing = [name for name in by_name if name not in run.outcomes]
        if missing:  # pragma: no cover - every target is a root or a child of one
            raise ImageBuildError(f"internal error: no outcome for {missing}")
        await trio.to_thread.run_sync(cache.prune, dict(run.used_entries))

    async def _build_root_and_children(
        self,
        run: BuildRun,
        cache: RootfsCache,
        root: BuildTarget,
        stale_children: list[BuildTarget],
    ) -> None:
        loader = ImageLoader(self.engine, self.config.prefix)
        started = trio.current_time()
        need_root = root.force or not root.current
        reason = ""
        entry: CacheEntry | None = None
        guest: LayerFile | None = None
        if not need_root and stale_children:
            entry = await cache.cached_root_entry(run, root)
            if entry is not None:
                guest = await sbx_layer(run, entry.epoch)
            expected_layers = [entry.layer.diff_id, guest.diff_id] if entry and guest else None
            if root.layers != expected_layers:
                need_root = True
                reason = "rebuilt so that its children can share its layers"
        from_cache = False
        if need_root:
            entry, from_cache = await cache.root_entry(run, root, reuse=not root.force)
            guest = await sbx_layer(run, entry.epoch)
            layers = [entry.layer, guest]
            packages = " ".join(root.recipe.packages)
            history = [
                f"sbx: mmdebstrap --variant=minbase {run.suite} + {packages}",
                f"sbx: mount point of the guest bundle, {BUNDLE_DIR}",
            ]
            await loader.assemble_and_load(run, root, [root.recipe], layers, history)
            run.finish(root, started, built=True, from_cache=from_cache, detail=reason)
        else:
            await ensure_tags(self.engine, root)
            run.finish(root, started, built=False)
        if not stale_children:
            return
        assert entry is not None
        assert guest is not None
        root_entry, root_guest = entry, guest

        def job(child: BuildTarget) -> Callable[[], Awaitable[None]]:
            async def run_child() -> None:
                child_started = trio.current_time()
                delta, cached = await cache.delta_entry(run, child, root_entry)
                chain = recipe_chain(child.recipe)
                history = [
                    f"sbx: mmdebstrap --variant=minbase {run.suite} + "
                    + " ".join(root.recipe.packages),
                    f"sbx: mount point of the guest bundle, {BUNDLE_DIR}",
                    f"sbx: {child.name} packages: " + " ".join(child.recipe.packages),
                ]
                await loader.assemble_and_load(
                    run,
                    child,
                    chain,
                    [root_entry.layer, root_guest, delta.layer],
                    history,
                    cache_entry=delta,
                )
                run.finish(child, child_started, built=True, from_cache=cached)

            return run_child

        await _run_all([job(child) for child in stale_children])
