"""``sbx images build --base IMAGE``: install packages in build containers and commit them.

The only way onto someone else's rootfs: each stale image gets a build
container from its parent (``sbx-base`` from ``IMAGE``) that runs apt with
the container's own network and sources, the root image also gets its
customize hook and the guest copied in, and the container is committed with
the sandbox image config and tagged.  Slow on fuse-overlayfs, but needs
neither mmdebstrap nor a registry.

Must not: leave a build container behind (``BuildContainers.create`` removes
it however the block ends), or reach the engine other than through
``ImageEngine``.
"""

from __future__ import annotations

import io
import os
import secrets
import shlex
import tarfile
import time

import trio

from orchestrator.config import ImagesConfig
from orchestrator.errors import ImageBuildError
from orchestrator.images.apt_progress import AptProgress, LineSplitter
from orchestrator.images.build_run import BuildRun, BuildTarget, seconds_left
from orchestrator.images.engine import BuildContainer, BuildContainers, ImageEngine
from orchestrator.images.engine_images import (
    ensure_tags,
    retire_replaced_images,
    verify_built_image,
)
from orchestrator.images.image_contents import (
    APT_OPTIONS,
    CUSTOMIZE_SCRIPT,
    DPKG_EXCLUDES,
    image_settings,
    recipe_chain,
    sbx_tree,
)
from orchestrator.images.models import BuildStage
from orchestrator.images.recipes import ImageRecipe

__all__ = ["ContainerBuilds"]


def _container_script(recipe: ImageRecipe, *, root: bool) -> str:
    packages = " ".join(shlex.quote(p) for p in recipe.packages)
    lines = ["set -eu", "export DEBIAN_FRONTEND=noninteractive"]
    if root:
        excludes = " ".join(shlex.quote(option) for option in DPKG_EXCLUDES)
        apt = " ".join(shlex.quote(f"{option};") for option in APT_OPTIONS)
        lines += [
            "mkdir -p /etc/dpkg/dpkg.cfg.d /etc/apt/apt.conf.d",
            f"printf '%s\\n' {excludes} > /etc/dpkg/dpkg.cfg.d/90sbx-nodoc",
            f"printf '%s\\n' {apt} > /etc/apt/apt.conf.d/90sbx",
        ]
    lines.append("apt-get update")
    if packages:
        lines.append(f"apt-get install -y --no-install-recommends {packages}")
    if root:
        lines += ["sh /tmp/sbx-customize.sh /", "rm -f /tmp/sbx-customize.sh"]
    lines += [
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/*",
        "find /tmp -mindepth 1 -maxdepth 1 ! -name .X11-unix -exec rm -rf {} +",
    ]
    return "\n".join(lines) + "\n"


def _tar_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _guest_archive(files: dict[str, tuple[bytes, int]]) -> bytes:
    """The guest as a tar for ``put_archive``: root-owned, dirs 0755, files 0644."""
    dirs: set[str] = set()
    for name in files:
        parent = os.path.dirname(name)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs | set(files)):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.mtime = int(time.time())
            if name in dirs:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data, mode = files[name]
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ContainerBuilds:
    """Builds the stale images of a build in containers from ``run.base_image``."""

    def __init__(self, engine: ImageEngine, config: ImagesConfig) -> None:
        self.engine = engine
        self.config = config

    async def build_all(self, run: BuildRun, targets: list[BuildTarget]) -> None:
        """``--base IMAGE``: install packages in build containers and commit them.

        ``docker commit`` of a big layer or a quiet ``apt-get`` step can stay
        silent longer than ``engine.call_timeout``; the build's own deadline
        (``images.build_timeout``) already bounds those calls.
        """
        long_call_timeout = int(self.config.build_timeout) + 60
        async with self.engine.build_containers(long_call_timeout=long_call_timeout) as containers:
            await self._build_stale(run, targets, containers)

    async def _build_stale(
        self, run: BuildRun, targets: list[BuildTarget], containers: BuildContainers
    ) -> None:
        assert run.base_image is not None
        base_ref = run.base_image
        checked_base = False
        for target in targets:
            started = trio.current_time()
            if not target.force and target.current:
                await ensure_tags(self.engine, target)
                run.finish(target, started, built=False)
                continue
            if not checked_base and await self.engine.inspect_image(base_ref) is None:
                raise ImageBuildError(
                    f"the base image {base_ref} is not on the engine — pull or load it first "
                    f"(`docker pull {base_ref}`), or drop --base to bootstrap with mmdebstrap"
                )
            checked_base = True
            if target.recipe.parent:
                parent_ref = f"{self.config.prefix}{target.recipe.parent}:latest"
            else:
                parent_ref = base_ref
            await self._build_one(
                run, containers, target, parent_ref, root=not target.recipe.parent
            )
            await verify_built_image(self.engine, target, None)
            await retire_replaced_images(self.engine, target)
            run.finish(target, started, built=True)

    async def _build_one(
        self,
        run: BuildRun,
        containers: BuildContainers,
        target: BuildTarget,
        parent_ref: str,
        *,
        root: bool,
    ) -> None:
        chain = recipe_chain(target.recipe)
        script = _container_script(target.recipe, root=root)
        name = f"sbx-build-{target.name}-{secrets.token_hex(4)}"
        run.emit(target.name, BuildStage.DOWNLOADING, f"starting {name} from {parent_ref}")
        async with containers.create(parent_ref, name=name, script=script) as container:
            if root:
                hook = await trio.to_thread.run_sync(
                    (target.recipe.directory / CUSTOMIZE_SCRIPT).read_bytes
                )
                await container.copy_in(
                    "/tmp",
                    _tar_bytes({"sbx-customize.sh": (hook, 0o644)}),
                    what="copying the customize hook into the build container",
                )
            await container.start()
            await self._follow_output(run, target, container)
            status = await container.wait(timeout=seconds_left())
            if status != 0:
                text = await container.output_tail(15)
                raise ImageBuildError(
                    f"installing {target.name}'s packages in a container from {parent_ref} "
                    f"failed with exit status {status}:\n{text.rstrip()}\n— the base image must "
                    "be Debian-like with working apt sources and network; check the package "
                    "names in the recipe"
                )
            if root:
                guest = await trio.to_thread.run_sync(sbx_tree)
                files = {path.lstrip("/"): (data, 0o644) for path, data in guest.items()}
                run.emit(target.name, BuildStage.INSTALLING, "copying the guest")
                await container.copy_in(
                    "/",
                    _guest_archive(files),
                    what="copying the guest into the build container",
                )
            run.emit(target.name, BuildStage.COMMITTING, "docker commit")
            await container.commit(
                target.repo,
                target.expected[:12],
                image_settings(target, chain),
                timeout=seconds_left(),
            )
            await self.engine.tag_image(target.hash_tag, target.repo, "latest")

    async def _follow_output(
        self, run: BuildRun, target: BuildTarget, container: BuildContainer
    ) -> None:
        """Forward a build container's output to the progress display until it exits."""
        reader = AptProgress()
        splitter = LineSplitter()

        def on_output(chunk: bytes) -> None:
            for line in splitter.feed(chunk):
                shown = reader.read(line)
                if shown is not None:
                    run.emit(target.name, *shown)

        await container.follow_output(
            on_output, what=f"following the build of {target.name}", timeout=seconds_left()
        )
