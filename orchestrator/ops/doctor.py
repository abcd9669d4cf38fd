"""``sbx doctor``: is this machine ready to run sandboxes, and if not, what to do.

Each check reports ok / warn / fail, what it saw, and -- when not ok -- the
fix.  The last check starts a real sandbox and pings its guest, because the
only proof that everything fits together is doing it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal

import trio

from orchestrator import protocol
from orchestrator.config import Config
from orchestrator.errors import SbxError

__all__ = ["Check", "collect_checks", "run_doctor"]

Status = Literal["ok", "warn", "fail"]

_SLOW_STORAGE = frozenset({"fuse-overlayfs", "vfs"})
"""Storage drivers that make every path lookup in a container slow (``vfs`` copies too)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


async def collect_checks(config: Config, start_sandbox: bool = True) -> list[Check]:
    from orchestrator.backends.registry import make_backend, make_image_builder

    checks: list[Check] = []
    py = sys.version_info
    checks.append(
        Check(
            "python",
            "ok" if py >= (3, 11) else "fail",
            sys.version.split()[0],
            "" if py >= (3, 11) else "install Python 3.11 or newer",
        )
    )
    checks.append(Check("protocol", "ok", f"version {protocol.PROTOCOL_VERSION}"))

    backend = make_backend(config)
    try:
        try:
            engine = await backend.describe_engine()
        except SbxError as exc:
            checks.append(Check("engine", "fail", str(exc).split(";")[0], str(exc)))
            return checks
        checks.append(
            Check(
                "engine",
                "ok",
                f"Docker {engine.get('version')} (API {engine.get('api_version')}), "
                f"storage {engine.get('storage_driver')}, runtimes "
                f"{', '.join(engine.get('runtimes', []))}",
            )
        )
        if engine.get("storage_driver") in _SLOW_STORAGE:
            checks.append(
                Check(
                    "storage",
                    "warn",
                    f"the engine stores containers with {engine.get('storage_driver')}: every "
                    "file lookup in a sandbox is a round trip to a helper process (about 70 us "
                    "measured with fuse-overlayfs), which slows starts and commands",
                    'where the kernel allows it, set "storage-driver": "overlay2" in the '
                    "engine's daemon.json (then rebuild the images: `sbx images build`)",
                )
            )
        if config.sandbox.runtime and config.sandbox.runtime not in engine.get("runtimes", []):
            checks.append(
                Check(
                    "runtime",
                    "fail",
                    f"sandbox.runtime = {config.sandbox.runtime!r} is not registered",
                    "register it in the engine's daemon.json `runtimes` and reload dockerd, or "
                    "unset sandbox.runtime",
                )
            )

        builder = make_image_builder(config)
        try:
            statuses = await builder.status()
        finally:
            await builder.aclose()
        for status in statuses:
            if not status.present:
                checks.append(
                    Check(
                        f"image {status.name}",
                        "fail",
                        f"{status.image} is missing",
                        f"run `sbx images build {status.name}` (or `make images`)",
                    )
                )
            elif not status.current:
                checks.append(
                    Check(
                        f"image {status.name}",
                        "warn",
                        f"{status.image} is stale (recipe or guest changed since it was built)",
                        f"run `sbx images build {status.name}`",
                    )
                )
            else:
                size = f"{(status.size or 0) / 1e6:.0f} MB"
                checks.append(
                    Check(
                        f"image {status.name}",
                        "ok",
                        f"{status.image}, {size}, recipe {status.expected_hash[:12]}",
                    )
                )
        if shutil.which("mmdebstrap") is None and not config.images.base_image:
            checks.append(
                Check(
                    "mmdebstrap",
                    "warn",
                    "not installed (needed to build images)",
                    "`sudo apt-get install mmdebstrap` (sbx installs it itself when root)",
                )
            )

        default = config.image_name(config.sandbox.image)
        if start_sandbox and await backend.image_exists(default):
            checks.append(await _sandbox_check(config, backend, default))
    finally:
        await backend.aclose()
    return checks


async def _sandbox_check(config: Config, backend: object, image: str) -> Check:
    from orchestrator.runtime import Orchestrator

    started = time.perf_counter()
    try:
        with trio.fail_after(config.sandbox.start_timeout + 30):
            cfg = config.model_copy(update={"reap_orphans": False})
            async with (
                Orchestrator(cfg) as orch,
                orch.session(image=image, memories=False) as session,
            ):
                ready = time.perf_counter() - started
                ping = await session.ping()
                who = await session.exec(["id", "-u"], timeout=10)
    except (SbxError, trio.TooSlowError) as exc:
        return Check(
            "sandbox",
            "fail",
            f"could not start {image}: {exc}",
            "rebuild the image with `sbx images build` and check `docker info`",
        )
    uid = who.stdout.decode().strip()
    if uid == "0":
        return Check("sandbox", "fail", f"{image} runs as root", "rebuild the image")
    return Check(
        "sandbox",
        "ok",
        f"{image} ready in {ready * 1000:.0f} ms, ping {ping * 1000:.2f} ms, uid {uid}",
    )


async def run_doctor(config: Config, as_json: bool, start_sandbox: bool) -> int:
    checks = await collect_checks(config, start_sandbox)
    failed = any(check.status == "fail" for check in checks)
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for check in checks:
            print(f"[{marks[check.status]}] {check.name}: {check.detail}")
            if check.fix and check.status != "ok":
                print(f"       fix: {check.fix}")
        warned = sum(1 for check in checks if check.status == "warn")
        if failed:
            print("some checks failed; see the fixes above")
        elif warned:
            print(f"all good, with {warned} warning{'s' if warned > 1 else ''} (see above)")
        else:
            print("all good")
    return 1 if failed else 0
