"""Builds ``sbx-base``, ``sbx-code-runner`` and ``sbx-desktop`` on a Docker Engine, registry-free.

How (decision 3, and measured on fuse-overlayfs, where package installs and
``docker commit`` inside containers take minutes):

* ``sbx-base`` = [mmdebstrap rootfs, guest].  The rootfs tar comes straight
  from ``mmdebstrap --variant=minbase`` with the host's Debian sources; the
  guest (``/opt/sbx/guest``) is its own small, deterministic top layer so a
  change to the guest's code never reruns mmdebstrap.
* a derived image (``parent: base``) = [base rootfs, guest, delta].  Its
  full rootfs is bootstrapped by mmdebstrap with the base's packages plus its
  own and the same hooks, under the base's ``SOURCE_DATE_EPOCH`` so that
  untouched files compare equal; ``layers.write_delta`` keeps only what
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

Every docker-py call goes through ``DockerEngine.call``; external commands
run with ``trio.run_process`` under the build's deadline; scratch space is
removed in ``finally``, also on cancellation.  Layers above the backends
reach this module only through ``runtime.make_image_builder``; it must not
leak docker-py types (callers see ``orchestrator.images.models``) and must
not need a registry.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import io
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import requests.exceptions
import structlog
import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.backends.docker.layers import (
    LayerFile,
    LayerIndex,
    docker_archive,
    file_layer,
    image_config,
    index_tar,
    plan_delta,
    write_delta,
    write_tree_layer,
)
from orchestrator.config import ImagesConfig
from orchestrator.errors import EngineError, ImageBuildError, ImageNotFound, SbxError
from orchestrator.images.assets import (
    GUEST_DIR_IN_IMAGE,
    GUEST_ENTRYPOINT,
    guest_bytecode,
    guest_files,
)
from orchestrator.images.host_sources import host_codename, host_debian_sources
from orchestrator.images.models import (
    BuildOutcome,
    BuildStage,
    ImageStatus,
    ProgressEvent,
    ProgressSink,
)
from orchestrator.images.recipes import (
    LABEL_IMAGE,
    LABEL_PROTOCOL,
    LABEL_RECIPE_HASH,
    ImageRecipe,
    load_recipe,
    load_recipes,
    recipe_hash,
    short_name,
)
from orchestrator.protocol import PROTOCOL_VERSION

__all__ = [
    "BUILDER_FORMAT",
    "SANDBOX_USER",
    "SANDBOX_WORKDIR",
    "STANDARD_PATH",
    "DockerImageBuilder",
    "default_cache_dir",
]

log = structlog.get_logger("orchestrator.images")

BUILDER_FORMAT = 1
"""Part of every cache key: bump it when the way rootfs tars or deltas are made changes."""

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_USER = "1000:1000"
SANDBOX_WORKDIR = "/workspace"
CUSTOMIZE_SCRIPT = "customize.sh"
"""A recipe directory's rootfs hook (``sh customize.sh ROOT``), run for it and its children."""

_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
_APT_OPTIONS = ('APT::Install-Recommends "false"', 'Acquire::Languages "none"')
_MMDEBSTRAP_OPTIONS = (
    "--verbose",
    "--variant=minbase",
    "--format=tar",
    "--skip=cleanup/tmp",
    *(f"--aptopt={option}" for option in _APT_OPTIONS),
    *(f"--dpkgopt={option}" for option in _DPKG_EXCLUDES),
)
_CLEAN_TMP_HOOK = (
    # cleanup/tmp is skipped so that /tmp/.X11-unix survives; empty /tmp here instead,
    # sparing mmdebstrap's own apt config (it removes that itself, later).
    "--customize-hook=find \"$1/tmp\" -mindepth 1 -maxdepth 1 ! -name 'mmdebstrap.*' "
    "-exec rm -rf {} +"
)
_NEUTRAL_HOST_FILES_HOOK = (
    # mmdebstrap copies the host's resolv.conf and hostname; the engine mounts its own.
    '--customize-hook=: > "$1/etc/resolv.conf"; echo sandbox > "$1/etc/hostname"; '
    'chmod 0644 "$1/etc/resolv.conf" "$1/etc/hostname"'
)
_MMDEBSTRAP_CONCURRENCY = max(1, min(2, os.cpu_count() or 1))
"""Two bootstraps at once where there are two cores: dpkg is mostly single-threaded, so
they overlap well (all three images from scratch here: 270 s instead of 371 s)."""
_LOAD_CONCURRENCY = 2
"""The engine unpacks two layers at once faster than one after the other (measured)."""
_TERM_GRACE = 30.0
"""Seconds mmdebstrap gets after SIGTERM to unmount and clean its chroot before SIGKILL."""
_TAIL_LINES = 30
_PROGRESS_INTERVAL = 0.5
_MNT_DETACH = 2
_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sbx/images``, else ``~/.cache/sbx/images``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sbx" / "images"


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_created(value: Any) -> datetime | None:
    """The engine's RFC 3339 time with nanoseconds, which ``fromisoformat`` may refuse."""
    if not isinstance(value, str) or not value:
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", value)
    if not match:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = match.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")
    except ValueError:
        return None


def _architecture() -> str:
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine or "amd64")


def _remaining() -> float:
    """Seconds left before the innermost deadline (the build's), at least one."""
    deadline = trio.current_effective_deadline()
    if deadline == float("inf"):
        return 24 * 3600.0
    return max(1.0, deadline - trio.current_time())


# --------------------------------------------------------------------------- scratch space


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (mmdebstrap mounts /proc, /sys... in its chroot)."""
    prefix = str(path).rstrip("/")
    found: list[str] = []
    try:
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return found
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _remove_tree(path: Path) -> None:
    """Delete scratch space, but never through a mount point left behind by a killed chroot.

    A SIGKILLed mmdebstrap can leave /proc or /sys mounted inside its chroot;
    deleting through those would reach the host.  They are lazily unmounted
    first; if that fails the directory is left in place and reported.
    """
    if not path.exists():
        return
    mounts = _mounts_under(path)
    if mounts:
        libc = ctypes.CDLL(None, use_errno=True)
        for point in sorted(mounts, key=len, reverse=True):
            libc.umount2(point.encode(), _MNT_DETACH)
        left = _mounts_under(path)
        if left:
            log.error(
                "scratch directory still has mounts; not deleting it",
                path=str(path),
                mounts=left,
                fix=f"unmount them (`umount -l {left[0]}`), then delete {path}",
            )
            return
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- build state


@dataclass
class _Target:
    """One image considered by a build."""

    recipe: ImageRecipe
    repo: str
    expected: str
    force: bool
    attrs: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def latest(self) -> str:
        return f"{self.repo}:latest"

    @property
    def hash_tag(self) -> str:
        return f"{self.repo}:{self.expected[:12]}"

    @property
    def label_hash(self) -> str | None:
        if self.attrs is None:
            return None
        labels = (self.attrs.get("Config") or {}).get("Labels") or {}
        value = labels.get(LABEL_RECIPE_HASH)
        return value if isinstance(value, str) else None

    @property
    def current(self) -> bool:
        return self.label_hash == self.expected

    @property
    def layers(self) -> list[str]:
        if self.attrs is None:
            return []
        return list((self.attrs.get("RootFS") or {}).get("Layers") or [])


@dataclass(frozen=True)
class _CacheEntry:
    """A cached mmdebstrap result: a rootfs tar (root recipes) or a delta (children)."""

    directory: Path
    key: str
    layer: LayerFile
    epoch: int


@dataclass
class _Run:
    """Per-build state shared by the steps of one ``build`` call."""

    progress: ProgressSink | None
    base_image: str | None
    tmp: Path = Path()
    suite: str = ""
    mirrors: list[Path] = field(default_factory=list)
    sources_digest: str = ""
    mmdebstrap: str = ""
    arch: str = field(default_factory=_architecture)
    stages: dict[str, BuildStage] = field(default_factory=dict)
    outcomes: dict[str, BuildOutcome] = field(default_factory=dict)
    used_entries: dict[str, str] = field(default_factory=dict)
    bootstrap_limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(_MMDEBSTRAP_CONCURRENCY)
    )
    load_limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(_LOAD_CONCURRENCY)
    )
    base_indexes: dict[str, LayerIndex] = field(default_factory=dict)
    index_lock: trio.Lock = field(default_factory=trio.Lock)
    guest_layers: dict[int, LayerFile] = field(default_factory=dict)
    long_api: Any = None
    """A docker-py client whose HTTP timeout covers long calls (commit, following logs)."""

    def current_activity(self) -> str:
        busy = [f"{name} {stage.value}" for name, stage in self.stages.items() if not stage.final]
        return ", ".join(busy) or "starting"


class _LineSplitter:
    """Turns a byte stream into lines; ``\\r`` counts as a line end (progress bars)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes | bytearray) -> list[str]:
        self._buf += data
        parts = re.split(rb"\r\n|\r|\n", self._buf)
        self._buf = parts.pop()
        return [part.decode("utf-8", "replace").rstrip() for part in parts if part.strip()]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, b""
        text = rest.decode("utf-8", "replace").strip()
        return [text] if text else []


@dataclass
class _AptProgress:
    """Reads mmdebstrap/apt output and says which stage it is in (and how far, when it can)."""

    stage: BuildStage = BuildStage.DOWNLOADING
    total: int = 0
    set_up: int = 0
    fetched: int = 0

    def read(self, line: str) -> tuple[BuildStage, str, float | None] | None:
        """``(stage, message, fraction)`` worth showing for ``line``, or ``None``."""
        text = line.strip()
        if text.startswith("I: "):
            info = text[3:]
            if "apt-get update" in info:
                self.stage = BuildStage.DOWNLOADING
                return self.stage, "updating the package lists", None
            if info.startswith("downloading packages"):
                self.stage = BuildStage.DOWNLOADING
                return self.stage, "downloading packages", None
            if info.startswith(("extracting archives", "installing essential")):
                self.stage = BuildStage.INSTALLING
                return self.stage, info.rstrip("."), None
            if info.startswith("installing remaining"):
                self.stage = BuildStage.INSTALLING
                return self.stage, "installing the recipe's packages", None
            if info.startswith("running --customize-hook"):
                self.stage = BuildStage.INSTALLING
                return self.stage, "customizing the rootfs (sandbox user, mount points)", None
            if info.startswith(("cleaning", "creating tarball")):
                self.stage = BuildStage.INSTALLING
                return self.stage, "writing the rootfs tar", None
            return None
        match = re.search(r"(\d+) newly installed", text)
        if match:
            self.total, self.set_up, self.fetched = int(match.group(1)), 0, 0
            return None
        if text.startswith("Get:"):
            self.stage = BuildStage.DOWNLOADING
            self.fetched += 1
            parts = text.split()
            package = parts[4] if len(parts) > 4 else text
            fraction = min(1.0, self.fetched / self.total) if self.total else None
            return self.stage, f"fetching {package}", fraction
        if text.startswith("Setting up "):
            self.stage = BuildStage.INSTALLING
            self.set_up += 1
            fraction = min(1.0, self.set_up / self.total) if self.total else None
            return self.stage, text.removesuffix(" ..."), fraction
        if text.startswith("Unpacking "):
            self.stage = BuildStage.INSTALLING
            return self.stage, text.split(" (")[0], None
        if text.startswith(("E: ", "W: ")):
            return self.stage, text, None
        return None


async def _terminate_gently(process: trio.Process) -> None:
    """SIGTERM (mmdebstrap then unmounts and removes its chroot), SIGKILL to the group later."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with trio.move_on_after(_TERM_GRACE):
        await process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the builder


class DockerImageBuilder:
    """Builds and inspects the sandbox images described by ``sandbox-images/*/recipe.yaml``."""

    def __init__(self, engine: DockerEngine, config: ImagesConfig) -> None:
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
        run = _Run(progress=progress, base_image=base)
        timeout = self.config.build_timeout
        try:
            with trio.fail_after(timeout):
                async with self._exclusive(run), self._scratch(run):
                    try:
                        await self._build(run, names, force)
                    finally:
                        if run.long_api is not None:
                            with trio.CancelScope(shield=True):
                                await trio.to_thread.run_sync(run.long_api.close)
        except trio.TooSlowError:
            self._fail_all(run, "timed out")
            raise ImageBuildError(
                f"building the images took longer than images.build_timeout = {timeout:g} s "
                f"(still busy: {run.current_activity()}) — raise images.build_timeout in "
                "sbx.toml (or SBX_IMAGES__BUILD_TIMEOUT) on a slow host or network, then run "
                "`sbx images build` again; finished steps are cached"
            ) from None
        except SbxError as exc:
            self._fail_all(run, str(exc).splitlines()[0])
            raise
        except OSError as exc:
            self._fail_all(run, str(exc))
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
            attrs = await self._inspect(f"{repo}:latest")
            target = _Target(recipe, repo, expected, False, attrs)
            rows.append(
                ImageStatus(
                    name=recipe.name,
                    image=target.latest,
                    present=attrs is not None,
                    current=target.current,
                    expected_hash=expected,
                    image_hash=target.label_hash,
                    size=int(attrs["Size"]) if attrs and "Size" in attrs else None,
                    created=_parse_created(attrs.get("Created")) if attrs else None,
                    image_id=attrs.get("Id") if attrs else None,
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

    async def _targets(self, run: _Run, names: Sequence[str] | None, force: bool) -> list[_Target]:
        recipes = await trio.to_thread.run_sync(self._select_recipes, names)
        requested = (
            {r.name for r in recipes}
            if names is None
            else {short_name(n, prefix=self.config.prefix) for n in names}
        )
        targets: list[_Target] = []
        for recipe in recipes:
            self._emit(run, recipe.name, BuildStage.CHECKING, "comparing the recipe hash")
            expected = await trio.to_thread.run_sync(
                functools.partial(recipe_hash, recipe.name, base_image=run.base_image)
            )
            repo = f"{self.config.prefix}{recipe.name}"
            attrs = await self._inspect(f"{repo}:latest")
            targets.append(
                _Target(recipe, repo, expected, force and recipe.name in requested, attrs)
            )
        return targets

    async def _build(self, run: _Run, names: Sequence[str] | None, force: bool) -> None:
        targets = await self._targets(run, names, force)
        log.info(
            "image build planned",
            images=[t.name for t in targets],
            stale=[t.name for t in targets if t.force or not t.current],
            base_image=run.base_image,
            force=force,
        )
        if run.base_image:
            await self._build_in_containers(run, targets)
        else:
            await self._build_bootstrapped(run, targets)
        order = {t.name: i for i, t in enumerate(targets)}
        run.outcomes = dict(sorted(run.outcomes.items(), key=lambda item: order[item[0]]))

    # ---------------------------------------------------------------- progress

    def _emit(
        self,
        run: _Run,
        image: str,
        stage: BuildStage,
        message: str = "",
        fraction: float | None = None,
    ) -> None:
        """Tell the progress sink (and, on stage changes, the log) what ``image`` is doing."""
        if run.stages.get(image) != stage:
            # With a progress display the user already sees this; keep it out of their way.
            report = log.debug if run.progress is not None else log.info
            report("image build stage", image=image, stage=stage.value, detail=message)
        run.stages[image] = stage
        if run.progress is None:
            return
        try:
            event = ProgressEvent(image=image, stage=stage, message=message, fraction=fraction)
            run.progress(event)
        except Exception:
            log.warning("the progress display failed; continuing without it", exc_info=True)
            run.progress = None

    def _emit_from_thread(
        self, run: _Run, image: str, stage: BuildStage, message: str, fraction: float | None = None
    ) -> None:
        """``_emit`` from a worker thread started by trio; silently dropped once trio is gone."""
        with contextlib.suppress(trio.RunFinishedError, RuntimeError):
            trio.from_thread.run_sync(self._emit, run, image, stage, message, fraction)

    def _fail_all(self, run: _Run, reason: str) -> None:
        for image, stage in list(run.stages.items()):
            if not stage.final:
                self._emit(run, image, BuildStage.FAILED, reason)

    def _finish(
        self,
        run: _Run,
        target: _Target,
        started: float,
        *,
        built: bool,
        from_cache: bool = False,
        detail: str = "",
    ) -> None:
        seconds = round(trio.current_time() - started, 2)
        run.outcomes[target.name] = BuildOutcome(
            name=target.name,
            image=target.latest,
            recipe_hash=target.expected,
            built=built,
            seconds=seconds,
            from_cache=from_cache,
            detail=detail,
        )
        stage = BuildStage.DONE if built else BuildStage.UP_TO_DATE
        message = detail or (f"built in {seconds:.1f} s" if built else target.hash_tag)
        self._emit(run, target.name, stage, message)

    # ---------------------------------------------------------------- locking and scratch

    @contextlib.asynccontextmanager
    async def _exclusive(self, run: _Run) -> AsyncIterator[None]:
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
    async def _scratch(self, run: _Run) -> AsyncIterator[None]:
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
                await trio.to_thread.run_sync(_remove_tree, run.tmp)

    def _remove_stale_scratch(self, tmp_root: Path) -> None:
        """Scratch dirs of builds that were killed (we hold the lock, so nobody uses them)."""
        tmp_root.mkdir(parents=True, exist_ok=True)
        for child in tmp_root.iterdir():
            if child.name.startswith("build-"):
                log.info("removing scratch space of an interrupted build", path=str(child))
                _remove_tree(child)

    # ---------------------------------------------------------------- engine helpers

    async def _inspect(self, ref: str) -> dict[str, Any] | None:
        api = self.engine.client.api
        try:
            attrs: dict[str, Any] = await self.engine.call(
                f"inspecting image {ref}", api.inspect_image, ref, image=ref
            )
        except ImageNotFound:
            return None
        return attrs

    async def _long_api(self, run: _Run) -> Any:
        """A client for calls that legitimately stay silent for minutes.

        The engine's shared client gives up on a response after
        ``engine.call_timeout``; ``docker commit`` of a big layer or a quiet
        ``apt-get`` step in a build container can take longer, and the
        build's own deadline already bounds them.
        """
        if run.long_api is None:
            timeout = int(self.config.build_timeout) + 60
            base_url = self.engine.base_url

            def connect() -> Any:
                if base_url:
                    return docker.APIClient(base_url=base_url, timeout=timeout)
                return docker.from_env(timeout=timeout).api

            run.long_api = await self.engine.call("connecting to the Docker Engine", connect)
        return run.long_api

    async def _ensure_tags(self, target: _Target) -> None:
        """Put back the hash tag of a current image if someone removed it."""
        if target.attrs is None:
            return
        if target.hash_tag in (target.attrs.get("RepoTags") or []):
            return
        api = self.engine.client.api
        await self.engine.call(
            f"tagging {target.hash_tag}",
            api.tag,
            target.attrs["Id"],
            target.repo,
            target.expected[:12],
        )

    async def _retire_old_images(self, target: _Target) -> None:
        """Free what the new image replaced: older ``<repo>:<hash>`` tags, and the old image.

        Loading moves ``latest`` (and, on a forced rebuild, the hash tag) to
        the new image; the previous one would linger untagged.  Images still
        used by a container are kept (the engine refuses), and retried next time.
        """
        api = self.engine.client.api
        old_id = (target.attrs or {}).get("Id")
        if old_id:
            old = await self._inspect(old_id)
            if old is not None and not old.get("RepoTags"):
                try:
                    await self.engine.call(
                        f"removing replaced image {old_id[:19]}", api.remove_image, old_id
                    )
                    log.info("removed the image this build replaced", image=old_id)
                except EngineError as exc:
                    log.info(
                        "kept the replaced image (still in use?)", image=old_id, error=str(exc)
                    )
        try:
            images = await self.engine.call(
                "listing sandbox images",
                api.images,
                filters={"label": f"{LABEL_IMAGE}={target.name}"},
            )
        except EngineError as exc:
            log.debug("cannot list old images", error=str(exc))
            return
        keep = {target.latest, target.hash_tag}
        for image in images or []:
            for tag in image.get("RepoTags") or []:
                repo, _, version = tag.rpartition(":")
                if repo != target.repo or tag in keep or not re.fullmatch(r"[0-9a-f]{12}", version):
                    continue
                try:
                    await self.engine.call(f"untagging {tag}", api.remove_image, tag)
                    log.info("removed an outdated image tag", tag=tag)
                except EngineError as exc:
                    log.info("kept an outdated image tag (still in use?)", tag=tag, error=str(exc))

    async def _verify(self, target: _Target, diff_ids: Sequence[str] | None) -> None:
        """Check what the engine now calls ``target``: labels, user, layers, tags."""
        attrs = await self._inspect(target.latest)
        if attrs is None:
            raise ImageBuildError(
                f"the engine reports no {target.latest} right after building it — check "
                "`docker images` and the engine's log, then run `sbx images build` again"
            )
        checked = _Target(target.recipe, target.repo, target.expected, False, attrs)
        problems: list[str] = []
        if not checked.current:
            problems.append(f"recipe-hash label {checked.label_hash!r}")
        if diff_ids is not None and checked.layers != list(diff_ids):
            problems.append("layers differ from the assembled archive")
        if (attrs.get("Config") or {}).get("User") != SANDBOX_USER:
            problems.append("user is not 1000:1000")
        if problems:
            raise ImageBuildError(
                f"{target.latest} was built but is not what was asked for ({'; '.join(problems)})"
                " — run `sbx images build --force` to rebuild it from scratch"
            )
        await self._ensure_tags(checked)

    # ---------------------------------------------------------------- image contents

    def _chain(self, recipe: ImageRecipe) -> list[ImageRecipe]:
        """The recipe and its ancestors, root first."""
        chain = [recipe]
        while chain[0].parent:
            chain.insert(0, load_recipe(chain[0].parent))
        return chain

    def _env(self, chain: Sequence[ImageRecipe]) -> list[str]:
        values = {"PATH": STANDARD_PATH}
        for recipe in chain:
            values.update(recipe.env)
        return [f"{key}={value}" for key, value in values.items()]

    def _labels(self, target: _Target) -> dict[str, str]:
        return {
            LABEL_IMAGE: target.name,
            LABEL_RECIPE_HASH: target.expected,
            LABEL_PROTOCOL: str(PROTOCOL_VERSION),
        }

    def _container_config(self, target: _Target, chain: Sequence[ImageRecipe]) -> dict[str, Any]:
        return {
            "User": SANDBOX_USER,
            "WorkingDir": SANDBOX_WORKDIR,
            "Entrypoint": list(GUEST_ENTRYPOINT),
            "Cmd": None,
            "Env": self._env(chain),
            "Labels": self._labels(target),
        }

    def _guest_tree(self) -> dict[str, bytes]:
        files = guest_files()
        files.update(guest_bytecode(files))
        return {f"{GUEST_DIR_IN_IMAGE}/{relative}": data for relative, data in files.items()}

    async def _guest_layer(self, run: _Run, epoch: int) -> LayerFile:
        """The guest as a layer; the same files and epoch always give the same ``diff_id``."""
        cached = run.guest_layers.get(epoch)
        if cached is not None:
            return cached
        files = await trio.to_thread.run_sync(self._guest_tree)
        out = run.tmp / f"guest-{epoch}.tar"
        layer = await trio.to_thread.run_sync(
            functools.partial(write_tree_layer, out, files, mtime=epoch)
        )
        run.guest_layers[epoch] = layer
        return layer

    # ---------------------------------------------------------------- mmdebstrap builds

    async def _build_bootstrapped(self, run: _Run, targets: list[_Target]) -> None:
        by_name = {t.name: t for t in targets}
        for target in targets:
            parent = target.recipe.parent
            if parent and load_recipe(parent).parent:
                raise ImageBuildError(
                    f"image {target.name} builds on {parent}, which has a parent itself; "
                    "bootstrapped images may only be one level above a root recipe — point "
                    f"{target.name}'s `parent:` at base, or build with `--base IMAGE`"
                )
        roots = [t for t in targets if not t.recipe.parent]
        for root in roots:
            children = [t for t in targets if t.recipe.parent == root.name]
            stale = [c for c in children if c.force or not c.current]
            for child in children:
                if child not in stale:
                    started = trio.current_time()
                    await self._ensure_tags(child)
                    self._finish(run, child, started, built=False)
            await self._build_root_and_children(run, root, stale)
        missing = [name for name in by_name if name not in run.outcomes]
        if missing:  # pragma: no cover - every target is a root or a child of one
            raise ImageBuildError(f"internal error: no outcome for {missing}")
        await trio.to_thread.run_sync(self._prune_cache, dict(run.used_entries))

    async def _prepare_bootstrap(self, run: _Run) -> None:
        """The suite and the sources files (part of every cache key); once per build."""
        if run.sources_digest:
            return
        suite, files = await trio.to_thread.run_sync(self._resolve_sources)
        run.suite = suite
        digest = hashlib.sha256(suite.encode())
        for name, text in files:
            path = run.tmp / name
            await trio.to_thread.run_sync(path.write_text, text)
            run.mirrors.append(path)
            digest.update(name.encode() + b"\0" + text.encode())
        run.sources_digest = digest.hexdigest()

    def _resolve_sources(self) -> tuple[str, list[tuple[str, str]]]:
        """(suite, [(file name, content)]) for mmdebstrap; see ``host_sources``."""
        codename = host_codename()
        suite = self.config.suite or codename
        if not suite:
            raise ImageBuildError(
                "cannot tell which Debian release to bootstrap: /etc/os-release has no "
                "VERSION_CODENAME — set images.suite (e.g. 'bookworm') and images.sources "
                "(e.g. ['deb http://deb.debian.org/debian bookworm main']) in sbx.toml"
            )
        if self.config.sources:
            text = "".join(f"{line.strip()}\n" for line in self.config.sources)
            return suite, [("sbx-sources.list", text)]
        if not codename:
            raise ImageBuildError(
                "this host has no VERSION_CODENAME in /etc/os-release, so its apt sources "
                "cannot be reused — set images.sources in sbx.toml, e.g. "
                f"['deb http://deb.debian.org/debian {suite} main']"
            )
        found = host_debian_sources(codename, target_suite=suite)
        for note in found.dropped:
            log.debug("apt source not used for images", source=note)
        if found.empty:
            raise ImageBuildError(
                f"no Debian apt sources for {codename} in /etc/apt/sources.list or "
                "/etc/apt/sources.list.d/ — set images.sources in sbx.toml, e.g. "
                f"['deb http://deb.debian.org/debian {suite} main']"
            )
        files: list[tuple[str, str]] = []
        if found.one_line:
            files.append(("host-sources.list", found.list_text()))
        if found.deb822:
            files.append(("host-sources.sources", found.sources_text()))
        return suite, files

    async def _find_mmdebstrap(self, run: _Run, image: str) -> str:
        """mmdebstrap's path, installing it with apt-get when we are root and can."""
        path = shutil.which("mmdebstrap")
        if path:
            return path
        can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
        if not can_install:
            raise ImageBuildError(
                "mmdebstrap is not installed and is needed to build the sandbox images without "
                "a registry — install it (`sudo apt-get install mmdebstrap` on Debian/Ubuntu), "
                "or start from an image the engine already has: `sbx images build --base "
                "debian:bookworm-slim` (images.base_image)"
            )
        self._emit(run, image, BuildStage.DOWNLOADING, "installing mmdebstrap with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"]
        with trio.fail_after(min(_remaining(), 900.0)):
            result = await trio.run_process(
                command, env=env, check=False, capture_stdout=True, capture_stderr=True
            )
            if result.returncode != 0:
                await trio.run_process(
                    ["apt-get", "update"],
                    env=env,
                    check=False,
                    capture_stdout=True,
                    capture_stderr=True,
                )
                result = await trio.run_process(
                    command, env=env, check=False, capture_stdout=True, capture_stderr=True
                )
        path = shutil.which("mmdebstrap")
        if result.returncode != 0 or not path:
            tail = (result.stderr or b"").decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ImageBuildError(
                "mmdebstrap is not installed and `apt-get install mmdebstrap` failed "
                f"({' / '.join(tail) or 'no output'}) — install it by hand, or build with "
                "`sbx images build --base debian:bookworm-slim`"
            )
        log.info("installed mmdebstrap", path=path)
        return path

    def _rootfs_key(self, run: _Run, chain: Sequence[ImageRecipe], extra: str = "") -> str:
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
            "options": [*_MMDEBSTRAP_OPTIONS, _CLEAN_TMP_HOOK, _NEUTRAL_HOST_FILES_HOOK],
            "arch": run.arch,
            "sources": run.sources_digest,
            "chain": spec,
            "extra": extra,
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    async def _mmdebstrap(
        self, run: _Run, image: str, chain: Sequence[ImageRecipe], out: Path, epoch: int
    ) -> None:
        """Bootstrap ``chain``'s packages (root first) into the tar ``out``.

        Callers hold ``run.bootstrap_limiter``, which also serialises finding mmdebstrap.
        """
        if not run.mmdebstrap:
            run.mmdebstrap = await self._find_mmdebstrap(run, image)
        packages: list[str] = []
        for recipe in chain:
            packages.extend(p for p in recipe.packages if p not in packages)
        hooks = [
            recipe.directory / CUSTOMIZE_SCRIPT
            for recipe in chain
            if (recipe.directory / CUSTOMIZE_SCRIPT).is_file()
        ]
        command = [
            run.mmdebstrap,
            *_MMDEBSTRAP_OPTIONS,
            f"--include={','.join(packages)}",
            _CLEAN_TMP_HOOK,
            *(f'--customize-hook=sh {shlex.quote(str(hook))} "$1"' for hook in hooks),
            _NEUTRAL_HOST_FILES_HOOK,
            run.suite,
            str(out),
            *(str(path) for path in run.mirrors),
        ]
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "LC_ALL": "C.UTF-8"}
        if os.geteuid() == 0:
            env["TMPDIR"] = str(run.tmp)
        reader = _AptProgress()

        def on_line(line: str) -> None:
            if line.startswith(("W: ", "E: ")) and "unsandboxed as root" not in line:
                # (apt's "_apt cannot reach the cache dir" note is expected under /root.)
                log.warning("mmdebstrap", image=image, line=line)
            else:
                log.debug("mmdebstrap", image=image, line=line)
            shown = reader.read(line)
            if shown is not None:
                self._emit(run, image, *shown)

        self._emit(run, image, BuildStage.DOWNLOADING, f"mmdebstrap {run.suite}: starting")
        log.info("running mmdebstrap", image=image, packages=len(packages), suite=run.suite)
        await self._run_streaming(
            command,
            env=env,
            on_line=on_line,
            what=f"mmdebstrap for {image}",
            fix=(
                "check that the apt sources are reachable (`apt-get update` on the host) and that "
                "every package in sandbox-images/*/recipe.yaml exists in "
                f"{run.suite}; set images.sources / images.suite to use other mirrors"
            ),
        )

    async def _run_streaming(
        self,
        command: list[str],
        *,
        env: dict[str, str],
        on_line: Callable[[str], None],
        what: str,
        fix: str,
    ) -> None:
        """Run ``command``, passing each output line to ``on_line``; fail with its tail."""
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        splitter = _LineSplitter()
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                functools.partial(
                    trio.run_process,
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    check=False,
                    env=env,
                    start_new_session=True,
                    deliver_cancel=_terminate_gently,
                )
            )
            stdout = process.stdout
            assert stdout is not None
            async with stdout:
                async for chunk in stdout:
                    for line in splitter.feed(chunk):
                        tail.append(line)
                        on_line(line)
            for line in splitter.flush():
                tail.append(line)
                on_line(line)
        log.info(
            "command finished",
            what=what,
            returncode=process.returncode,
            seconds=round(time.monotonic() - started, 1),
        )
        if process.returncode != 0:
            errors = [line for line in tail if line.startswith("E:")]
            shown = "\n".join(f"  {line}" for line in (errors or list(tail)[-12:]))
            raise ImageBuildError(
                f"{what} failed with exit status {process.returncode}:\n{shown}\n— {fix}"
            )

    # cache entries ------------------------------------------------------------------

    def _entry_dir(self, name: str, key: str) -> Path:
        return self.cache_dir / "rootfs" / f"{name}-{key[:24]}"

    def _read_entry(self, name: str, key: str) -> _CacheEntry | None:
        directory = self._entry_dir(name, key)
        try:
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            layer_path = directory / "layer.tar"
            if meta.get("key") != key or layer_path.stat().st_size != meta["size"]:
                return None
            return _CacheEntry(
                directory=directory,
                key=key,
                layer=LayerFile(path=layer_path, diff_id=meta["diff_id"], size=meta["size"]),
                epoch=int(meta["epoch"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store_entry(
        self, name: str, key: str, layer: LayerFile, epoch: int, run_tmp: Path
    ) -> _CacheEntry:
        """Move a finished layer into the cache atomically (meta.json marks it complete)."""
        staging = Path(tempfile.mkdtemp(prefix=f"entry-{name}-", dir=run_tmp))
        os.replace(layer.path, staging / "layer.tar")
        meta = {
            "key": key,
            "name": name,
            "diff_id": layer.diff_id,
            "size": layer.size,
            "epoch": epoch,
            "created": _now_rfc3339(),
            "format": BUILDER_FORMAT,
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        final = self._entry_dir(name, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        return _CacheEntry(
            directory=final,
            key=key,
            layer=LayerFile(path=final / "layer.tar", diff_id=layer.diff_id, size=layer.size),
            epoch=epoch,
        )

    def _drop_entry(self, entry: _CacheEntry) -> None:
        shutil.rmtree(entry.directory, ignore_errors=True)

    def _prune_cache(self, keep: dict[str, str]) -> None:
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

    async def _root_entry(
        self, run: _Run, target: _Target, *, reuse: bool
    ) -> tuple[_CacheEntry, bool]:
        """The root recipe's rootfs tar: (entry, came from the cache)."""
        await self._prepare_bootstrap(run)
        chain = [target.recipe]
        key = await trio.to_thread.run_sync(self._rootfs_key, run, chain)
        if reuse:
            entry = await trio.to_thread.run_sync(self._read_entry, target.name, key)
            if entry is not None:
                run.used_entries[target.name] = key
                return entry, True
        epoch = int(time.time())
        out = run.tmp / f"{target.name}.rootfs.tar"
        async with run.bootstrap_limiter:
            await self._mmdebstrap(run, target.name, chain, out, epoch)
        self._emit(run, target.name, BuildStage.COMPUTING_LAYER, "hashing the rootfs layer")
        layer = await trio.to_thread.run_sync(file_layer, out)
        entry = await trio.to_thread.run_sync(
            self._store_entry, target.name, key, layer, epoch, run.tmp
        )
        run.used_entries[target.name] = key
        return entry, False

    async def _cached_root_entry(self, run: _Run, target: _Target) -> _CacheEntry | None:
        await self._prepare_bootstrap(run)
        key = await trio.to_thread.run_sync(self._rootfs_key, run, [target.recipe])
        entry = await trio.to_thread.run_sync(self._read_entry, target.name, key)
        if entry is not None:
            run.used_entries[target.name] = key
        return entry

    async def _base_index(self, run: _Run, image: str, entry: _CacheEntry) -> LayerIndex:
        """The root rootfs's index, computed once per build and shared by its children."""
        async with run.index_lock:
            index = run.base_indexes.get(entry.key)
            if index is None:
                self._emit(run, image, BuildStage.COMPUTING_LAYER, "indexing the base rootfs")
                index = await trio.to_thread.run_sync(index_tar, entry.layer.path)
                run.base_indexes[entry.key] = index
            return index

    async def _delta_entry(
        self, run: _Run, target: _Target, root: _CacheEntry
    ) -> tuple[_CacheEntry, bool]:
        """The child's delta over the root rootfs: (entry, came from the cache)."""
        chain = self._chain(target.recipe)
        key = await trio.to_thread.run_sync(
            functools.partial(self._rootfs_key, run, chain, extra=root.layer.diff_id)
        )
        if not target.force:
            entry = await trio.to_thread.run_sync(self._read_entry, target.name, key)
            if entry is not None:
                run.used_entries[target.name] = key
                return entry, True
        full = run.tmp / f"{target.name}.rootfs.tar"
        try:
            if run.bootstrap_limiter.available_tokens == 0:
                self._emit(run, target.name, BuildStage.WAITING, "waiting for a bootstrap slot")
            async with run.bootstrap_limiter:
                await self._mmdebstrap(run, target.name, chain, full, root.epoch)
            base_index = await self._base_index(run, target.name, root)
            self._emit(run, target.name, BuildStage.COMPUTING_LAYER, "indexing the full rootfs")
            derived_index = await trio.to_thread.run_sync(index_tar, full)
            plan = plan_delta(base_index, derived_index)
            self._emit(
                run,
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

    async def _build_root_and_children(
        self, run: _Run, root: _Target, stale_children: list[_Target]
    ) -> None:
        started = trio.current_time()
        need_root = root.force or not root.current
        reason = ""
        entry: _CacheEntry | None = None
        guest: LayerFile | None = None
        if not need_root and stale_children:
            entry = await self._cached_root_entry(run, root)
            if entry is not None:
                guest = await self._guest_layer(run, entry.epoch)
            expected_layers = [entry.layer.diff_id, guest.diff_id] if entry and guest else None
            if root.layers != expected_layers:
                need_root = True
                reason = "rebuilt so that its children can share its layers"
        from_cache = False
        if need_root:
            entry, from_cache = await self._root_entry(run, root, reuse=not root.force)
            guest = await self._guest_layer(run, entry.epoch)
            layers = [entry.layer, guest]
            packages = " ".join(root.recipe.packages)
            history = [
                f"sbx: mmdebstrap --variant=minbase {run.suite} + {packages}",
                f"sbx: guest in {GUEST_DIR_IN_IMAGE}",
            ]
            await self._assemble_and_load(run, root, [root.recipe], layers, history)
            self._finish(run, root, started, built=True, from_cache=from_cache, detail=reason)
        else:
            await self._ensure_tags(root)
            self._finish(run, root, started, built=False)
        if not stale_children:
            return
        assert entry is not None
        assert guest is not None
        root_entry, guest_layer = entry, guest

        def job(child: _Target) -> Callable[[], Awaitable[None]]:
            async def run_child() -> None:
                child_started = trio.current_time()
                delta, cached = await self._delta_entry(run, child, root_entry)
                chain = self._chain(child.recipe)
                history = [
                    f"sbx: mmdebstrap --variant=minbase {run.suite} + "
                    + " ".join(root.recipe.packages),
                    f"sbx: guest in {GUEST_DIR_IN_IMAGE}",
                    f"sbx: {child.name} packages: " + " ".join(child.recipe.packages),
                ]
                await self._assemble_and_load(
                    run,
                    child,
                    chain,
                    [root_entry.layer, guest_layer, delta.layer],
                    history,
                    cache_entry=delta,
                )
                self._finish(run, child, child_started, built=True, from_cache=cached)

            return run_child

        await self._run_all([job(child) for child in stale_children])

    async def _run_all(self, jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
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

    async def _assemble_and_load(
        self,
        run: _Run,
        target: _Target,
        chain: Sequence[ImageRecipe],
        layers: Sequence[LayerFile],
        history: Sequence[str],
        *,
        cache_entry: _CacheEntry | None = None,
    ) -> None:
        created = _now_rfc3339()
        settings = self._container_config(target, chain)
        config = image_config(
            diff_ids=[layer.diff_id for layer in layers],
            history=history,
            created=created,
            architecture=run.arch,
            user=settings["User"],
            working_dir=settings["WorkingDir"],
            entrypoint=settings["Entrypoint"],
            env=settings["Env"],
            labels=settings["Labels"],
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
                    await trio.to_thread.run_sync(self._drop_entry, cache_entry)
                    raise ImageBuildError(
                        f"{exc} — the cached layer {cache_entry.directory} was damaged and has "
                        "been removed; run `sbx images build` again"
                    ) from None
                raise
        await self._verify(target, [layer.diff_id for layer in layers])
        await self._retire_old_images(target)

    async def _layers_on_engine(self, run: _Run, layers: Sequence[LayerFile]) -> frozenset[str]:
        """diff_ids of the longest prefix of ``layers`` the engine already has as a chain.

        Read from the ``RootFS.Layers`` of the sandbox images this build
        considers (a layer chain an image has is a chain the engine has);
        those layer tars need not be sent again.
        """
        wanted = [layer.diff_id for layer in layers]
        best = 0
        for name in list(run.stages):
            attrs = await self._inspect(f"{self.config.prefix}{name}:latest")
            have = list((attrs or {}).get("RootFS", {}).get("Layers") or [])
            common = 0
            for mine, theirs in zip(wanted, have, strict=False):
                if mine != theirs:
                    break
                common += 1
            best = max(best, common)
        return frozenset(wanted[:best])

    async def _load(
        self,
        run: _Run,
        target: _Target,
        config: bytes,
        layers: Sequence[LayerFile],
        *,
        omit: frozenset[str] = frozenset(),
    ) -> None:
        """Stream a docker-save archive of ``layers`` to the engine's load endpoint."""
        total = sum(layer.size for layer in layers if layer.diff_id not in omit)
        self._emit(run, target.name, BuildStage.LOADING, f"sending {total / 1e6:.0f} MB", 0.0)
        stop = threading.Event()
        state = {"sent": 0, "last": 0.0}
        tags = [target.latest, target.hash_tag]
        read_timeout = _remaining()

        def report(stage_message: str, fraction: float | None) -> None:
            now = time.monotonic()
            if now - state["last"] >= _PROGRESS_INTERVAL:
                state["last"] = now
                self._emit_from_thread(
                    run, target.name, BuildStage.LOADING, stage_message, fraction
                )

        def on_bytes(count: int) -> None:
            state["sent"] += count
            report(
                f"sent {state['sent'] / 1e6:.0f} of {total / 1e6:.0f} MB",
                0.5 * state["sent"] / total if total else None,
            )

        def load() -> None:
            api = self.engine.client.api
            url = f"{api.base_url}/v{api.api_version}/images/load"
            body = docker_archive(
                config, layers, tags, omit=omit, should_stop=stop.is_set, on_bytes=on_bytes
            )
            try:
                response = api.post(
                    url,
                    data=body,
                    params={"quiet": "0"},
                    headers={"Content-Type": "application/x-tar"},
                    stream=True,
                    timeout=(60, read_timeout),
                )
                with contextlib.closing(response):
                    if response.status_code >= 400:
                        raise ImageBuildError(
                            f"the engine refused the image archive for {target.latest} "
                            f"(HTTP {response.status_code}: {response.text.strip()[:300]}) — "
                            "check `docker info` and the engine's log"
                        )
                    for raw in response.iter_lines():
                        if stop.is_set():
                            return
                        if not raw:
                            continue
                        item = json.loads(raw)
                        error = item.get("errorDetail", {}).get("message") or item.get("error")
                        if error:
                            raise ImageBuildError(
                                f"the engine could not load {target.latest}: {error} — run "
                                "`sbx images build --force` to rebuild its layers"
                            )
                        detail = item.get("progressDetail") or {}
                        if detail.get("total"):
                            report(
                                "unpacking the layers",
                                0.5 + 0.5 * detail.get("current", 0) / detail["total"],
                            )
            except requests.exceptions.RequestException as exc:
                if stop.is_set():
                    return
                raise ImageBuildError(
                    f"loading {target.latest} into the engine failed: {exc} — check that the "
                    "engine is healthy (`docker info`) and has free space in /var/lib/docker"
                ) from None

        started = time.monotonic()
        try:
            await self.engine.call(
                f"loading {target.latest} into the engine", load, timeout=read_timeout
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

    # ---------------------------------------------------------------- container builds

    async def _build_in_containers(self, run: _Run, targets: list[_Target]) -> None:
        """``--base IMAGE``: install packages in build containers and commit them."""
        assert run.base_image is not None
        base_ref = run.base_image
        checked_base = False
        for target in targets:
            started = trio.current_time()
            if not target.force and target.current:
                await self._ensure_tags(target)
                self._finish(run, target, started, built=False)
                continue
            if not checked_base and await self._inspect(base_ref) is None:
                raise ImageBuildError(
                    f"the base image {base_ref} is not on the engine — pull or load it first "
                    f"(`docker pull {base_ref}`), or drop --base to bootstrap with mmdebstrap"
                )
            checked_base = True
            if target.recipe.parent:
                parent_ref = f"{self.config.prefix}{target.recipe.parent}:latest"
            else:
                parent_ref = base_ref
            await self._container_build(run, target, parent_ref, root=not target.recipe.parent)
            await self._verify(target, None)
            await self._retire_old_images(target)
            self._finish(run, target, started, built=True)

    def _container_script(self, recipe: ImageRecipe, *, root: bool) -> str:
        packages = " ".join(shlex.quote(p) for p in recipe.packages)
        lines = ["set -eu", "export DEBIAN_FRONTEND=noninteractive"]
        if root:
            excludes = " ".join(shlex.quote(option) for option in _DPKG_EXCLUDES)
            apt = " ".join(shlex.quote(f"{option};") for option in _APT_OPTIONS)
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

    @staticmethod
    def _tar_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, (data, mode) in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    async def _container_build(
        self, run: _Run, target: _Target, parent_ref: str, *, root: bool
    ) -> None:
        api = self.engine.client.api
        chain = self._chain(target.recipe)
        script = self._container_script(target.recipe, root=root)
        name = f"sbx-build-{target.name}-{secrets.token_hex(4)}"
        self._emit(run, target.name, BuildStage.DOWNLOADING, f"starting {name} from {parent_ref}")
        created = await self.engine.call(
            f"creating build container from {parent_ref}",
            api.create_container,
            parent_ref,
            entrypoint=["/bin/sh", "-c", script],
            user="0:0",
            working_dir="/",
            name=name,
        )
        container_id = created["Id"]
        try:
            if root:
                hook = await trio.to_thread.run_sync(
                    (target.recipe.directory / CUSTOMIZE_SCRIPT).read_bytes
                )
                await self.engine.call(
                    "copying the customize hook into the build container",
                    api.put_archive,
                    container_id,
                    "/tmp",
                    self._tar_bytes({"sbx-customize.sh": (hook, 0o644)}),
                )
            await self.engine.call(f"starting {name}", api.start, container_id)
            long_api = await self._long_api(run)
            await self._follow_logs(run, target, container_id)
            result = await self.engine.call(
                f"waiting for {name}", long_api.wait, container_id, timeout=_remaining()
            )
            status = int(result.get("StatusCode", -1))
            if status != 0:
                logs = await self.engine.call(
                    f"reading the log of {name}", api.logs, container_id, tail=15
                )
                text = logs.decode("utf-8", "replace") if isinstance(logs, bytes) else str(logs)
                raise ImageBuildError(
                    f"installing {target.name}'s packages in a container from {parent_ref} "
                    f"failed with exit status {status}:\n{text.rstrip()}\n— the base image must "
                    "be Debian-like with working apt sources and network; check the package "
                    "names in the recipe"
                )
            if root:
                guest = await trio.to_thread.run_sync(self._guest_tree)
                files = {path.lstrip("/"): (data, 0o644) for path, data in guest.items()}
                self._emit(run, target.name, BuildStage.INSTALLING, "copying the guest")
                await self.engine.call(
                    "copying the guest into the build container",
                    api.put_archive,
                    container_id,
                    "/",
                    self._guest_archive(files),
                )
            self._emit(run, target.name, BuildStage.COMMITTING, "docker commit")
            await self.engine.call(
                f"committing {target.hash_tag}",
                long_api.commit,
                container_id,
                repository=target.repo,
                tag=target.expected[:12],
                conf=self._container_config(target, chain),
                timeout=_remaining(),
            )
            await self.engine.call(
                f"tagging {target.latest}", api.tag, target.hash_tag, target.repo, "latest"
            )
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(EngineError):
                await self.engine.call(
                    f"removing {name}",
                    api.remove_container,
                    container_id,
                    force=True,
                    timeout=60,
                )

    def _guest_archive(self, files: dict[str, tuple[bytes, int]]) -> bytes:
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

    async def _follow_logs(self, run: _Run, target: _Target, container_id: str) -> None:
        """Forward a build container's output to the progress display until it exits."""
        api = await self._long_api(run)
        reader = _AptProgress()
        splitter = _LineSplitter()

        def on_line(line: str) -> None:
            shown = reader.read(line)
            if shown is not None:
                self._emit(run, target.name, *shown)

        def follow() -> None:
            stream = api.logs(container_id, stream=True, follow=True)
            try:
                for chunk in stream:
                    for line in splitter.feed(chunk):
                        with contextlib.suppress(trio.RunFinishedError, RuntimeError):
                            trio.from_thread.run_sync(on_line, line)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

        await self.engine.call(
            f"following the build of {target.name}", follow, timeout=_remaining()
        )
