"""The guest bundle on a Docker Engine: a named volume, made once and mounted read-only.

``sbx-guest-<key>`` (see ``images.guest_bundle``) is made on first use: a
short-lived container of ``sbx-base`` -- no network, root inside it only --
unpacks the guest's code into the volume and assembles the runtime next to
it, writing a completion marker last.  The container's name doubles as an
engine-wide lock, so two supervisors never assemble the same bundle at
once; a volume without its marker (an assembly cut short) is made again.

The volume is made explicitly, labelled with its key: the engine makes any
volume a container names and it lacks, empty and unlabelled, so a bundle
removed from under a running supervisor (``sbx gc`` of another version's,
``docker volume prune``) would come back empty.  A bundle is checked before
every sandbox that mounts it (one inspect), and one without its label is
made again.  ``collect_stale`` removes the bundles of other guest versions
that no container uses (``sbx gc``).

Must not: run anything of the user's, or leave the assembling container behind.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.errors import EngineError, ImageNotFound, SbxError
from orchestrator.images.guest_bundle import (
    ASSEMBLE_SCRIPT,
    COMPLETE_MARKER,
    bundle_key,
    guest_tar,
)

__all__ = ["BUNDLE_PREFIX", "LABEL_GUEST_BUNDLE", "GuestVolumes", "collect_stale"]

LABEL_GUEST_BUNDLE = "io.sbx.guest-bundle"
BUNDLE_PREFIX = "sbx-guest-"
_ASSEMBLE_TIMEOUT = 300.0
STALE_AFTER = 600.0
"""A bundle made less than this long ago is never collected: it may be on its way
into use (made, not yet mounted)."""


class GuestVolumes:
    """Finds or makes the bundle volume for the engine's current ``sbx-base``."""

    def __init__(self, engine: DockerEngine, base_image: str) -> None:
        self.engine = engine
        self.base_image = base_image
        self._ready: str | None = None
        self._lock = trio.Lock()

    async def volume(self) -> str:
        """The name of a complete bundle volume (made now if needed, or again if it went)."""
        ready = self._ready
        if ready is not None:
            api = (await self.engine.connected()).api
            checked = await self.engine.call(
                f"checking the guest bundle {ready}", _labelled, api, ready, retry="inspect"
            )
            if checked:
                return ready
            self.forget()
        async with self._lock:
            if self._ready is None:
                self._ready = await self._ensure()
        return self._ready

    async def current(self) -> str | None:
        """The bundle this engine's ``sbx-base`` needs (``None`` without the image)."""
        client = await self.engine.connected()
        try:
            base = await self.engine.call(
                "inspecting the base image", client.images.get, self.base_image, retry="inspect"
            )
        except ImageNotFound:
            return None
        return f"{BUNDLE_PREFIX}{bundle_key(str(base.id))}"

    def forget(self) -> None:
        """The volume turned out unusable: check (and remake) it on the next use."""
        self._ready = None

    async def _ensure(self) -> str:
        name = await self.current()
        if name is None:
            raise ImageNotFound(self.base_image, "base")
        await self.engine.call(f"preparing the guest bundle {name}", self._prepare, name)
        return name

    def _prepare(self, name: str) -> None:
        """Make sure ``name`` holds a complete bundle (runs in a worker thread).

        The assembling container exists exactly while an assembly is under way
        (it is removed only after success, with the volume on failure), so a
        volume without one is complete; an assembler that is left over, not
        running, is the trace of one cut short, and everything is made again.
        """
        client = self.engine.client
        api = client.api
        worker = f"{name}-assemble"
        try:
            state = api.inspect_container(worker)["State"]
        except Exception:
            state = None
        if state is not None and state.get("Running"):
            api.wait(worker, timeout=int(_ASSEMBLE_TIMEOUT))
            state = None if _gone(api, worker) else api.inspect_container(worker)["State"]
        if state is not None:  # left over from an assembly cut short
            api.remove_container(worker, force=True)
            _remove_volume(api, name)
        elif _labelled(api, name):
            return
        elif _volume_exists(api, name):
            # Made empty by the engine for a container that named it after it was removed.
            try:
                api.remove_volume(name)
            except Exception as exc:
                raise EngineError(
                    f"the guest bundle {name} was removed while in use and came back empty; "
                    f"it is remade once no sandbox mounts it ({exc}) -- retry"
                ) from None
        api.create_volume(name, labels={LABEL_GUEST_BUNDLE: name.removeprefix(BUNDLE_PREFIX)})
        try:
            container = client.containers.create(
                self.base_image,
                ["sh", "-c", ASSEMBLE_SCRIPT, "assemble", "/v"],
                entrypoint=[],
                name=worker,
                environment={"MARKER": COMPLETE_MARKER},
                volumes={name: {"bind": "/v", "mode": "rw"}},
                network_disabled=True,
                user="0:0",
                labels={LABEL_GUEST_BUNDLE: "true"},
            )
        except Exception as exc:
            if "Conflict" not in str(exc) and "already in use" not in str(exc):
                raise
            # Another supervisor started assembling this very bundle: wait for it.
            api.wait(worker, timeout=int(_ASSEMBLE_TIMEOUT))
            if not _labelled(api, name):
                raise EngineError(
                    f"another supervisor's assembly of {name} failed; retry"
                ) from None
            return
        try:
            container.put_archive("/v", guest_tar())
            container.start()
            status = container.wait(timeout=int(_ASSEMBLE_TIMEOUT))
            if status.get("StatusCode") != 0:
                logs = container.logs(tail=20).decode("utf-8", "replace")
                raise EngineError(
                    f"assembling the guest bundle {name} failed ({status}): {logs}; "
                    "rebuild the base image with `sbx images build base`"
                )
        except BaseException:
            container.remove(force=True)
            _remove_volume(api, name)
            raise
        container.remove(force=True)


def _gone(api: object, container: str) -> bool:
    try:
        api.inspect_container(container)  # type: ignore[attr-defined]
    except Exception:
        return True
    return False


async def collect_stale(
    engine: DockerEngine, current: str | None, older_than: float = STALE_AFTER
) -> list[str]:
    """Remove guest bundles other than ``current`` that no container mounts and that were
    made more than ``older_than`` seconds ago; their names.

    Every change of the guest's code (an upgrade of sbx) makes a new bundle of
    about 50 MB; the old ones stay until collected.  A bundle in use is refused
    by the engine and kept.  A supervisor of another version that still wants
    its bundle finds it gone at its next sandbox and makes it again.
    """
    api = (await engine.connected()).api
    listed = await engine.call(
        "listing guest bundles", api.volumes, filters={"name": BUNDLE_PREFIX}
    )
    now = datetime.now(UTC)
    removed: list[str] = []
    for volume in listed.get("Volumes") or []:
        name = str(volume.get("Name", ""))
        if not name.startswith(BUNDLE_PREFIX) or name == current:
            continue
        made = _parse_time(str(volume.get("CreatedAt", "")))
        if made is not None and (now - made).total_seconds() < older_than:
            continue
        try:
            await engine.call(
                f"removing guest bundle {name}", api.remove_volume, name, guarded=False
            )
        except SbxError:
            continue  # in use (or already gone): kept
        removed.append(name)
    return removed


def _parse_time(text: str) -> datetime | None:
    """The engine's RFC 3339 time (``2026-12-05T14:18:33Z``, with or without an offset)."""
    try:
        made = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return made if made.tzinfo is not None else made.replace(tzinfo=UTC)


def _labelled(api: object, name: str) -> bool:
    """The volume exists and was made as a bundle (not left empty by the engine)."""
    try:
        volume = api.inspect_volume(name)  # type: ignore[attr-defined]
    except Exception:
        return False
    return LABEL_GUEST_BUNDLE in (volume.get("Labels") or {})


def _volume_exists(api: object, name: str) -> bool:
    try:
        api.inspect_volume(name)  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


def _remove_volume(api: object, name: str) -> None:
    with contextlib.suppress(Exception):
        api.remove_volume(name, force=True)  # type: ignore[attr-defined]
