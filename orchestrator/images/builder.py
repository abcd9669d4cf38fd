"""Builds ``sbx-base``, ``sbx-code-runner`` and ``sbx-desktop`` on an engine, registry-free.

``ImageBuilder.build`` plans a build (which recipes, in which order, which
are stale: an image whose recipe-hash label is current is left alone),
holds the cache directory's lock and the build's scratch space, and hands
the stale images to one of two paths (decision 3, and measured on
fuse-overlayfs, where package installs and ``docker commit`` inside
containers take minutes):

* ``bootstrapped_build``, the default: rootfs layers made by mmdebstrap on
  the host and cached by everything but the guest (``rootfs_cache``), then
  assembled into images and loaded (``image_load``); a guest-only change
  re-assembles and reloads in seconds of our time plus the engine's layer
  unpacking, and an unchanged rebuild only compares labels;
* ``container_build``, for ``--base IMAGE`` (``base_image``): start from an
  image the engine already has, install packages in build containers (with
  the container's own network and sources) and commit them — slow, but the
  only way on top of someone else's rootfs.

``ImageBuilder.status`` says per recipe whether the engine has its image and
whether it is current (``sbx images ls``, ``sbx doctor``).  The other steps:
``mmdebstrap`` (running it), ``apt_progress`` (reading apt's output),
``engine_images`` (checking and tagging what the engine holds),
``image_contents`` (what every image is configured with) and ``build_run``
(one build's state and progress).

Must not: import docker-py or ``orchestrator.backends`` (the engine is
reached only through ``engine.ImageEngine``, which the Docker backend
implements and ``runtime.make_image_builder`` hands in), or need a registry.
External commands run with ``trio.run_process`` under the build's deadline;
scratch space is removed in ``finally``, also on cancellation; callers see
only ``orchestrator.images.models``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import structlog
import trio

from orchestrator.config import ImagesConfig
from orchestrator.errors import ImageBuildError, SbxError
from orchestrator.images.bootstrapped_build import BootstrappedBuilds
from orchestrator.images.build_run import BuildRun, BuildTarget
from orchestrator.images.container_build import ContainerBuilds
from orchestrator.images.engine import ImageEngine
from orchestrator.images.mmdebstrap import remove_scratch_tree
from orchestrator.images.models import BuildOutcome, BuildStage, ImageStatus, ProgressSink
from orchestrator.images.recipes import (
    ImageRecipe,
    load_recipe,
    load_recipes,
    recipe_hash,
    short_name,
)

__all__ = ["ImageBuilder", "default_cache_dir"]

log = structlog.get_logger("orchestrator.images")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sbx/images``, else ``~/.cache/sbx/images``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sbx" / "images"


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
            await BootstrappedBuilds(self.engine, self.config, self.cache_dir).build_all(
                run, targets
            )
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
