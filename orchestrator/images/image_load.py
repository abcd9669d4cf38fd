"""Putting a bootstrapped image on the engine: a docker-save archive streamed to it.

``ImageLoader.assemble_and_load`` writes the image config for a stack of
layer tars (cached rootfs or delta, and the guest layer from
``sbx_layer``), streams the archive (``image_archive.docker_archive``) to
the engine (``ImageEngine.load_image_archive``) with progress, leaves out
the layers the engine already has as a chain, then checks the result and
retires what it replaced.  The upload runs in a worker thread and stops
when the build is cancelled.

Must not: bootstrap or cache layers (``rootfs_cache`` does), or start
containers; nothing here needs a registry.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence

import structlog
import trio

from orchestrator.errors import ImageBuildError
from orchestrator.images.build_run import (
    BuildRun,
    BuildTarget,
    now_rfc3339,
    seconds_left,
)
from orchestrator.images.engine import ImageEngine
from orchestrator.images.engine_images import retire_replaced_images, verify_built_image
from orchestrator.images.image_archive import docker_archive, image_config
from orchestrator.images.image_contents import image_settings, sbx_tree
from orchestrator.images.layer_files import LayerFile, write_tree_layer
from orchestrator.images.models import BuildStage
from orchestrator.images.recipes import ImageRecipe
from orchestrator.images.rootfs_cache import CacheEntry, drop_entry
from orchestrator.resilience.retries import RetryPolicy, with_retries

__all__ = ["ImageLoader", "sbx_layer"]

_LOAD_RETRIES = RetryPolicy(attempts=3, first_wait=1.0, max_wait=5.0, deadline=600.0)
"""An image load is long: few tries, spaced out."""

log = structlog.get_logger("orchestrator.images")

_PROGRESS_INTERVAL = 0.5


async def sbx_layer(run: BuildRun, epoch: int) -> LayerFile:
    """sbx's own layer (``sbx_tree``); the same epoch always gives the same ``diff_id``."""
    cached = run.sbx_layers.get(epoch)
    if cached is not None:
        return cached
    files = await trio.to_thread.run_sync(sbx_tree)
    out = run.tmp / f"sbx-{epoch}.tar"
    layer = await trio.to_thread.run_sync(
        functools.partial(write_tree_layer, out, files, mtime=epoch)
    )
    run.sbx_layers[epoch] = layer
    return layer


class ImageLoader:
    """Loads assembled images into ``engine``; ``prefix`` names the sandbox images there."""

    def __init__(self, engine: ImageEngine, prefix: str) -> None:
        self.engine = engine
        self.prefix = prefix

    async def assemble_and_load(
        self,
        run: BuildRun,
        target: BuildTarget,
        chain: Sequence[ImageRecipe],
        layers: Sequence[LayerFile],
        history: Sequence[str],
        *,
        cache_entry: CacheEntry | None = None,
    ) -> None:
        created = now_rfc3339()
        settings = image_settings(target, chain)
        config = image_config(
            diff_ids=[layer.diff_id for layer in layers],
            history=history,
            created=created,
            architecture=run.arch,
            user=settings.user,
            working_dir=settings.working_dir,
            entrypoint=settings.entrypoint,
            env=settings.env,
            labels=settings.labels,
        )
        async with run.load_limiter:
            try:
                omit = await self._layers_on_engine(run, layers)
                try:
                    await self._load(run, target, config, layers, omit=omit)
                except ImageBuildError as exc:
                    if not omit:
                        raise
                    log.warning(
                        "loading with the known layers left out failed; sending them too",
                        image=target.latest,
                        error=str(exc),
                    )
                    await self._load(run, target, config, layers)
            except ImageBuildError as exc:
                if cache_entry is not None and "diff" in str(exc).lower():
                    await trio.to_thread.run_sync(drop_entry, cache_entry)
                    raise ImageBuildError(
                        f"{exc} — the cached layer {cache_entry.directory} was damaged and has "
                        "been removed; run `sbx images build` again"
                    ) from None
                raise
        await verify_built_image(self.engine, target, [layer.diff_id for layer in layers])
        await retire_replaced_images(self.engine, target)

    async def _layers_on_engine(self, run: BuildRun, layers: Sequence[LayerFile]) -> frozenset[str]:
        """diff_ids of the longest prefix of ``layers`` the engine already has as a chain.

        Read from the layers of the sandbox images this build
        considers (a layer chain an image has is a chain the engine has);
        those layer tars need not be sent again.
        """
        wanted = [layer.diff_id for layer in layers]
        best = 0
        for name in list(run.stages):
            image = await self.engine.inspect_image(f"{self.prefix}{name}:latest")
            have = list(image.layers) if image is not None else []
            common = 0
            for mine, theirs in zip(wanted, have, strict=False):
                if mine != theirs:
                    break
                common += 1
            best = max(best, common)
        return frozenset(wanted[:best])

    async def _load(
        self,
        run: BuildRun,
        target: BuildTarget,
        config: bytes,
        layers: Sequence[LayerFile],
        *,
        omit: frozenset[str] = frozenset(),
    ) -> None:
        """Stream a docker-save archive of ``layers`` to the engine."""
        total = sum(layer.size for layer in layers if layer.diff_id not in omit)
        run.emit(target.name, BuildStage.LOADING, f"sending {total / 1e6:.0f} MB", 0.0)
        stop = threading.Event()
        state = {"sent": 0, "last": 0.0}
        tags = [target.latest, target.hash_tag]
        read_timeout = seconds_left()

        def report(stage_message: str, fraction: float | None) -> None:
            now = time.monotonic()
            if now - state["last"] >= _PROGRESS_INTERVAL:
                state["last"] = now
                run.emit_from_thread(target.name, BuildStage.LOADING, stage_message, fraction)

        def on_bytes(count: int) -> None:
            state["sent"] += count
            report(
                f"sent {state['sent'] / 1e6:.0f} of {total / 1e6:.0f} MB",
                0.5 * state["sent"] / total if total else None,
            )

        def on_unpacking(unpacked: int, to_unpack: int) -> None:
            report("unpacking the layers", 0.5 + 0.5 * unpacked / to_unpack)

        async def send() -> None:
            # A fresh archive each try: the stream of the failed one is spent.
            state["sent"] = 0
            archive = docker_archive(
                config, layers, tags, omit=omit, should_stop=stop.is_set, on_bytes=on_bytes
            )
            await self.engine.load_image_archive(
                target.latest,
                archive,
                should_stop=stop.is_set,
                on_unpacking=on_unpacking,
                timeout=read_timeout,
            )

        started = time.monotonic()
        try:
            # Loading is idempotent: an engine that dropped the connection or answered 5xx
            # is sent the archive again.
            await with_retries(
                "load_image", send, policy=_LOAD_RETRIES, on_retry=self.engine.retried
            )
        finally:
            stop.set()
        log.info(
            "loaded an image",
            image=target.latest,
            layers=len(layers),
            layers_already_there=len(omit),
            bytes=total,
            seconds=round(time.monotonic() - started, 1),
        )
