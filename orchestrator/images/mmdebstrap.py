"""Bootstrapping a rootfs tar with mmdebstrap, and removing what a killed one left behind.

``prepare_sources`` settles the suite and the apt sources (the host's
Debian sources unless ``images.sources``/``images.suite`` say otherwise);
``bootstrap`` runs ``mmdebstrap --variant=minbase`` for a recipe chain, under
the build's deadline, with its output turned into progress events by
``apt_progress.AptProgress``.
mmdebstrap gets SIGTERM and a grace period to unmount its chroot before its
process group is killed; ``remove_scratch_tree`` then deletes scratch space
without reaching through a mount a killed chroot left behind.

Must not: talk to the engine, or decide what is cached (``rootfs_cache``
does); processes run through trio only, never blocking the trio thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog
import trio

from orchestrator.config import ImagesConfig
from orchestrator.errors import ImageBuildError
from orchestrator.images.apt_progress import AptProgress, LineSplitter
from orchestrator.images.build_run import BuildRun, seconds_left
from orchestrator.images.host_sources import host_codename, host_debian_sources
from orchestrator.images.image_contents import (
    APT_OPTIONS,
    CUSTOMIZE_SCRIPT,
    DPKG_EXCLUDES,
)
from orchestrator.images.models import BuildStage
from orchestrator.images.recipes import ImageRecipe

__all__ = [
    "bootstrap",
    "fixed_options",
    "prepare_sources",
    "remove_scratch_tree",
]

log = structlog.get_logger("orchestrator.images")

_MMDEBSTRAP_OPTIONS = (
    "--verbose",
    "--variant=minbase",
    "--format=tar",
    "--skip=cleanup/tmp",
    *(f"--aptopt={option}" for option in APT_OPTIONS),
    *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
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
_TERM_GRACE = 30.0
"""Seconds mmdebstrap gets after SIGTERM to unmount and clean its chroot before SIGKILL."""
_TAIL_LINES = 30
_MNT_DETACH = 2


def fixed_options() -> list[str]:
    """The options every bootstrap passes (part of every cache key)."""
    return [*_MMDEBSTRAP_OPTIONS, _CLEAN_TMP_HOOK, _NEUTRAL_HOST_FILES_HOOK]


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


def remove_scratch_tree(path: Path) -> None:
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


# --------------------------------------------------------------------------- apt sources


async def prepare_sources(run: BuildRun, config: ImagesConfig) -> None:
    """The suite and the sources files (part of every cache key); once per build."""
    if run.sources_digest:
        return
    suite, files = await trio.to_thread.run_sync(_resolve_sources, config)
    run.suite = suite
    digest = hashlib.sha256(suite.encode())
    for name, text in files:
        path = run.tmp / name
        await trio.to_thread.run_sync(path.write_text, text)
        run.mirrors.append(path)
        digest.update(name.encode() + b"\0" + text.encode())
    run.sources_digest = digest.hexdigest()


def _resolve_sources(config: ImagesConfig) -> tuple[str, list[tuple[str, str]]]:
    """(suite, [(file name, content)]) for mmdebstrap; see ``host_sources``."""
    codename = host_codename()
    suite = config.suite or codename
    if not suite:
        raise ImageBuildError(
            "cannot tell which Debian release to bootstrap: /etc/os-release has no "
            "VERSION_CODENAME — set images.suite (e.g. 'bookworm') and images.sources "
            "(e.g. ['deb http://deb.debian.org/debian bookworm main']) in sbx.toml"
        )
    if config.sources:
        text = "".join(f"{line.strip()}\n" for line in config.sources)
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


# --------------------------------------------------------------------------- running mmdebstrap


async def _find_mmdebstrap(run: BuildRun, image: str) -> str:
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
    run.emit(image, BuildStage.DOWNLOADING, "installing mmdebstrap with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"]
    with trio.fail_after(min(seconds_left(), 900.0)):
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


async def bootstrap(
    run: BuildRun, image: str, chain: Sequence[ImageRecipe], out: Path, epoch: int
) -> None:
    """Bootstrap ``chain``'s packages (root first) into the tar ``out``.

    Callers hold ``run.bootstrap_limiter``, which also serialises finding mmdebstrap,
    and have called ``prepare_sources``.
    """
    if not run.mmdebstrap:
        run.mmdebstrap = await _find_mmdebstrap(run, image)
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
    reader = AptProgress()

    def on_line(line: str) -> None:
        if line.startswith(("W: ", "E: ")) and "unsandboxed as root" not in line:
            # (apt's "_apt cannot reach the cache dir" note is expected under /root.)
            log.warning("mmdebstrap", image=image, line=line)
        else:
            log.debug("mmdebstrap", image=image, line=line)
        shown = reader.read(line)
        if shown is not None:
            run.emit(image, *shown)

    run.emit(image, BuildStage.DOWNLOADING, f"mmdebstrap {run.suite}: starting")
    log.info("running mmdebstrap", image=image, packages=len(packages), suite=run.suite)
    await _run_streaming(
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


async def _terminate_gently(process: trio.Process) -> None:
    """SIGTERM (mmdebstrap then unmounts and removes its chroot), SIGKILL to the group later."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with trio.move_on_after(_TERM_GRACE):
        await process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _run_streaming(
    command: list[str],
    *,
    env: dict[str, str],
    on_line: Callable[[str], None],
    what: str,
    fix: str,
) -> None:
    """Run ``command``, passing each output line to ``on_line``; fail with its tail."""
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    splitter = LineSplitter()
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
