"""Builds ``sbx-base``, ``sbx-code-runner`` and ``sbx-desktop`` on an engine, registry-free.

How (decision 3, and measured on fuse-overlayfs, where package installs and
``docker commit`` inside containers take minutes):

* ``sbx-base`` = [mmdebstrap rootfs, guest].  The rootfs tar comes straight
  from ``mmdebstrap --variant=minbase`` with the host's Debian sources; the
  guest (``/opt/sbx/guest``) is its own small, deterministic top layer so a
  change to the guest's code never reruns mmdebstrap.
* a derived image (``parent: base``) = [base rootfs, guest, delta].  Its
  full rootfs is bootstrapped by mmdebstrap with the base's packages plus its
  own and the same hooks, under the base's ``SOURCE_DATE_EPOCH`` so that
  untouched files compare equal; ``layer_delta.write_delta`` keeps only what
  differs.  The image is assembled as a docker-save archive and loaded, so it
  really is FROM ``sbx-base`` (its ``RootFS.Layers`` start with the base's).
* mmdebstrap results (the base rootfs tar, the deltas) live in a host cache
  keyed by everything but the guest, so a guest-only change re-assembles and
  reloads in seconds of our time plus the engine's layer unpacking, and an
  unchanged rebuild only compares labels.
* ``--base IMAGE`` (``base_image``): start from an image the engine already
  has; packages are then installed in build containers (with the container's
  own network and sources) and committed — slow, but the only way on top of
  someone else's rootfs.

This module holds the public ``ImageBuilder``: it plans a build (which
recipes, in which order, which are stale), holds the cache directory's lock
and the build's scratch space, runs the mmdebstrap path root first and then
its children concurrently, and reports ``status()``.  The steps live next to
it: ``mmdebstrap`` (running it), ``apt_progress`` (reading apt's output),
``rootfs_cache`` (the host cache of bootstrapped layers), ``image_load``
(docker-save archives into the engine), ``container_build`` (the ``--base
IMAGE`` path), ``engine_images`` (checking and tagging what the engine
holds), ``image_contents`` (what every image is configured with) and
``build_run`` (one build's state and progress).

The engine is reached only through ``engine.ImageEngine``, which the Docker
backend implements (``backends.docker.image_engine.DockerImageEngine``);
``runtime.make_image_builder`` puts the two together.  Must not: import
docker-py or ``orchestrator.backends``, or need a registry.  External
commands run with ``trio.run_process`` under the build's deadline; scratch
space is removed in ``finally``, also on cancellation; callers see only
``orchestrator.images.models``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import structlog
import trio

from orchestrator.config import ImagesConfig
from orchestrator.errors import ImageBuildError, SbxError
from orchestrator.images.assets import GUEST_DIR_IN_IMAGE
from orchestrator.images.build_run import BuildRun, BuildTarget
from orchestrator.images.container_build import ContainerBuilds
from orchestrator.images.engine import ImageEngine
from orchestrator.images.engine_images import ensure_tags
from orchestrator.images.image_contents import recipe_chain
from orchestrator.images.image_load import ImageLoader, guest_layer
from orchestrator.images.layer_files import LayerFile
from orchestrator.images.mmdebstrap import remove_scratch_tree
from orchestrator.images.models import BuildOutcome, BuildStage, ImageStatus, ProgressSink
from orchestrator.images.recipes import (
    ImageRecipe,
    load_recipe,
    load_recipes,
    recipe_hash,
    short_name,
)
from orchestrator.images.rootfs_cache import CacheEntry, RootfsCache

__all__ = ["ImageBuilder", "default_cache_dir"]

log = structlog.get_logger("orchestrator.images")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sbx/images``, else ``~/.cache/sbx/images``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sbx" / "images"


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


class ImageBuilder:
    """Builds and inspects the sandbox images described by ``sandbox-images/*/recipe.yaml``."""

    def __init__(self, engine: ImageEngine, config: ImagesConfig) -> None:
        self.engine = engine
        self.config = config
        self.cache_dir = (config.cache_dir or default_cache_dir()).expanduser()

    # ---------------------------------------------------------------- public API

    async def build(
        self,
        names: Sequence[str] | None = None,
        *,
        base_image: str | None = None,
        force: bool = False,
        progress: ProgressSink | None = None,
    ) -> list[BuildOutcome]:
        """Build the named images (short or full names; all when ``None``) and their parents.

        Parents are built first when stale, missing, or (for mmdebstrap
        builds) when their cached rootfs no longer matches the image.  An
        image whose recipe-hash label is current is left alone unless
        ``force`` (which applies to the named images, or all of them) redoes
        it from scratch, ignoring the host cache.  ``base_image`` (default
        ``images.base_image``) starts ``sbx-base`` from an existing image.
        Returns one outcome per image considered, parents first.
        """
        base = base_image if base_image is not None else self.config.base_image
        run = BuildRun(progress=progress, base_image=base)
        timeout = self.config.build_timeout
        try:
            with trio.fail_after(timeout):
                async with self._exclusive(run), self._scratch(run):
                    await self._build(run, names, force)
        except trio.TooSlowError:
            run.fail_all("timed out")
            raise ImageBuildError(
                f"building the images took longer than images.build_timeout = {timeout:g} s "
                f"(still busy: {run.current_activity()}) — raise images.build_timeout in "
                "sbx.toml (or SBX_IMAGES__BUILD_TIMEOUT) on a slow host or network, then run "
                "`sbx images build` again; finished steps are cached"
            ) from None
        except SbxError as exc:
            run.fail_all(str(exc).splitlines()[0])
            raise
        except OSError as exc:
            run.fail_all(str(exc))
            raise ImageBuildError(
                f"building the images failed: {exc} — check free disk space and permissions "
                f"under {self.cache_dir} (images.cache_dir) and /var/lib/docker"
            ) from exc
        return list(run.outcomes.values())

    async def status(self, names: Sequence[str] | None = None) -> list[ImageStatus]:
        """Per recipe: is its image on the engine, and is it current?  Used by `sbx images ls`."""
        recipes = await trio.to_thread.run_sync(self._select_recipes, names)
        rows: list[ImageStatus] = []
        for recipe in recipes:
            expected = await trio.to_thread.run_sync(
                functools.partial(recipe_hash, recipe.name, base_image=self.config.base_image)
            )
            repo = f"{self.config.prefix}{recipe.name}"
            existing = await self.engine.inspect_image(f"{repo}:latest")
            target = BuildTarget(recipe, repo, expected, False, existing)
            rows.append(
                ImageStatus(
                    name=recipe.name,
                    image=target.latest,
                    present=existing is not None,
                    current=target.current,
                    expected_hash=expected,
                    image_hash=target.label_hash,
                    size=existing.size if existing else None,
                    created=existing.created if existing else None,
                    image_id=(existing.id or None) if existing else None,
                )
            )
        return rows

    async def aclose(self) -> None:
        """Close the engine client this builder was given (it owns it when made by the CLI)."""
        await self.engine.aclose()

    # ---------------------------------------------------------------- planning

    def _select_recipes(self, names: Sequence[str] | None) -> list[ImageRecipe]:
        """The requested recipes (validated) in build order; blocking file reads, so threaded."""
        every = load_recipes()
        if names is None:
            wanted = list(every)
        else:
            wanted = []
            for name in names:
                short = short_name(name, prefix=self.config.prefix)
                wanted.append(load_recipe(short).name)
        order: list[ImageRecipe] = []

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if name in trail:
                raise ImageBuildError(
                    f"image recipes have a parent cycle: {' -> '.join((*trail, name))} — fix "
                    "the `parent:` fields in sandbox-images/*/recipe.yaml"
                )
            recipe = every.get(name) or load_recipe(name)
            if recipe.parent:
                visit(recipe.parent, (*trail, name))
            if recipe not in order:
                order.append(recipe)

        for name in wanted:
            visit(name, ())
        return order

    async def _targets(
        self, run: BuildRun, names: Sequence[str] | None, force: bool
    ) -> list[BuildTarget]:
        recipes = await trio.to_thread.run_sync(self._select_recipes, names)
        requested = (
            {r.name for r in recipes}
            if names is None
            else {short_name(n, prefix=self.config.prefix) for n in names}
        )
        targets: list[BuildTarget] = []
        for recipe in recipes:
            run.emit(recipe.name, BuildStage.CHECKING, "comparing the recipe hash")
            expected = await trio.to_thread.run_sync(
                functools.partial(recipe_hash, recipe.name, base_image=run.base_image)
            )
            repo = f"{self.config.prefix}{recipe.name}"
            existing = await self.engine.inspect_image(f"{repo}:latest")
            targets.append(
                BuildTarget(recipe, repo, expected, force and recipe.name in requested, existing)
            )
        return targets

    async def _build(self, run: BuildRun, names: Sequence[str] | None, force: bool) -> None:
        targets = await self._targets(run, names, force)
        log.info(
            "image build planned",
            images=[t.name for t in targets],
            stale=[t.name for t in targets if t.force or not t.current],
            base_image=run.base_image,
            force=force,
        )
        if run.base_image:
            await ContainerBuilds(self.engine, self.config).build_all(run, targets)
        else:
            await self._build_bootstrapped(run, targets)
        order = {t.name: i for i, t in enumerate(targets)}
        run.outcomes = dict(sorted(run.outcomes.items(), key=lambda item: order[item[0]]))

    # ---------------------------------------------------------------- locking and scratch

    @contextlib.asynccontextmanager
    async def _exclusive(self, run: BuildRun) -> AsyncIterator[None]:
        """One build per cache directory at a time (an flock, polled so it stays cancellable)."""
        await trio.to_thread.run_sync(
            functools.partial(self.cache_dir.mkdir, parents=True, exist_ok=True)
        )
        fd = os.open(self.cache_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if not waited:
                        log.info("waiting for another image build", cache_dir=str(self.cache_dir))
                        waited = True
                    await trio.sleep(1.0)
            yield
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def _scratch(self, run: BuildRun) -> AsyncIterator[None]:
        """A temp dir under the cache dir for this build, removed however the build ends."""
        tmp_root = self.cache_dir / "tmp"
        await trio.to_thread.run_sync(self._remove_stale_scratch, tmp_root)
        run.tmp = Path(
            await trio.to_thread.run_sync(
                functools.partial(tempfile.mkdtemp, prefix="build-", dir=tmp_root)
            )
        )
        try:
            yield
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_scratch_tree, run.tmp)

    def _remove_stale_scratch(self, tmp_root: Path) -> None:
        """Scratch dirs of builds that were killed (we hold the lock, so nobody uses them)."""
        tmp_root.mkdir(parents=True, exist_ok=True)
        for child in tmp_root.iterdir():
            if child.name.startswith("build-"):
                log.info("removing scratch space of an interrupted build", path=str(child))
                remove_scratch_tree(child)

    # ---------------------------------------------------------------- mmdebstrap builds

    async def _build_bootstrapped(self, run: BuildRun, targets: list[BuildTarget]) -> None:
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
                guest = await guest_layer(run, entry.epoch)
            expected_layers = [entry.layer.diff_id, guest.diff_id] if entry and guest else None
            if root.layers != expected_layers:
                need_root = True
                reason = "rebuilt so that its children can share its layers"
        from_cache = False
        if need_root:
            entry, from_cache = await cache.root_entry(run, root, reuse=not root.force)
            guest = await guest_layer(run, entry.epoch)
            layers = [entry.layer, guest]
            packages = " ".join(root.recipe.packages)
            history = [
                f"sbx: mmdebstrap --variant=minbase {run.suite} + {packages}",
                f"sbx: guest in {GUEST_DIR_IN_IMAGE}",
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
                    f"sbx: guest in {GUEST_DIR_IN_IMAGE}",
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
