"""The sandbox images as the engine holds them: checked after a build, tags kept right.

After either build path has put an image on the engine, ``verify_built_image``
checks what the engine now calls it (labels, user, layers) and puts back its
hash tag; ``retire_replaced_images`` frees what it replaced.  The engine is
reached through ``ImageEngine`` only.

Must not: build, load or commit images (the build paths do), or remove
anything a container still uses (the engine refuses; we keep it and retry on
the next build).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import structlog

from orchestrator.errors import EngineError, ImageBuildError
from orchestrator.images.build_run import BuildTarget
from orchestrator.images.engine import ImageEngine
from orchestrator.images.image_contents import SANDBOX_USER
from orchestrator.images.recipes import LABEL_IMAGE

__all__ = ["ensure_tags", "retire_replaced_images", "verify_built_image"]

log = structlog.get_logger("orchestrator.images")


async def ensure_tags(engine: ImageEngine, target: BuildTarget) -> None:
    """Put back the hash tag of a current image if someone removed it."""
    if target.existing is None:
        return
    if target.hash_tag in target.existing.tags:
        return
    await engine.tag_image(target.existing.id, target.repo, target.expected[:12])


async def retire_replaced_images(engine: ImageEngine, target: BuildTarget) -> None:
    """Free what the new image replaced: older ``<repo>:<hash>`` tags, and the old image.

    Loading moves ``latest`` (and, on a forced rebuild, the hash tag) to
    the new image; the previous one would linger untagged.  Images still
    used by a container are kept (the engine refuses), and retried next time.
    """
    old_id = target.existing.id if target.existing is not None else None
    if old_id:
        old = await engine.inspect_image(old_id)
        if old is not None and not old.tags:
            try:
                await engine.remove_image(old_id, what=f"removing replaced image {old_id[:19]}")
                log.info("removed the image this build replaced", image=old_id)
            except EngineError as exc:
                log.info("kept the replaced image (still in use?)", image=old_id, error=str(exc))
    try:
        tags = await engine.image_tags(f"{LABEL_IMAGE}={target.name}")
    except EngineError as exc:
        log.debug("cannot list old images", error=str(exc))
        return
    keep = {target.latest, target.hash_tag}
    for tag in tags:
        repo, _, version = tag.rpartition(":")
        if repo != target.repo or tag in keep or not re.fullmatch(r"[0-9a-f]{12}", version):
            continue
        try:
            await engine.remove_image(tag, what=f"untagging {tag}")
            log.info("removed an outdated image tag", tag=tag)
        except EngineError as exc:
            log.info("kept an outdated image tag (still in use?)", tag=tag, error=str(exc))


async def verify_built_image(
    engine: ImageEngine, target: BuildTarget, diff_ids: Sequence[str] | None
) -> None:
    """Check what the engine now calls ``target``: labels, user, layers, tags."""
    image = await engine.inspect_image(target.latest)
    if image is None:
        raise ImageBuildError(
            f"the engine reports no {target.latest} right after building it — check "
            "`docker images` and the engine's log, then run `sbx images build` again"
        )
    checked = BuildTarget(target.recipe, target.repo, target.expected, False, image)
    problems: list[str] = []
    if not checked.current:
        problems.append(f"recipe-hash label {checked.label_hash!r}")
    if diff_ids is not None and checked.layers != list(diff_ids):
        problems.append("layers differ from the assembled archive")
    if image.user != SANDBOX_USER:
        problems.append("user is not 1000:1000")
    if problems:
        raise ImageBuildError(
            f"{target.latest} was built but is not what was asked for ({'; '.join(problems)})"
            " — run `sbx images build --force` to rebuild it from scratch"
        )
    await ensure_tags(engine, checked)
