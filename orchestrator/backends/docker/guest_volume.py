"""The guest bundle on a Docker Engine: a named volume, made once and mounted read-only.

``sbx-guest-<key>`` (see ``images.guest_bundle``) is made on first use: a
short-lived container of ``sbx-base`` -- no network, root inside it only --
unpacks the guest's code into the volume and assembles the runtime next to
it, writing a completion marker last.  The container's name doubles as an
engine-wide lock, so two supervisors never assemble the same bundle at
once; a volume without its marker (an assembly cut short) is made again.

Must not: run anything of the user's, or leave the assembling container behind.
"""

from __future__ import annotations

import contextlib

import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.errors import EngineError, ImageNotFound
from orchestrator.images.guest_bundle import (
    ASSEMBLE_SCRIPT,
    COMPLETE_MARKER,
    bundle_key,
    guest_tar,
)

__all__ = ["LABEL_GUEST_BUNDLE", "GuestVolumes"]

LABEL_GUEST_BUNDLE = "io.sbx.guest-bundle"
_ASSEMBLE_TIMEOUT = 300.0


class GuestVolumes:
    """Finds or makes the bundle volume for the engine's current ``sbx-base``."""

    def __init__(self, engine: DockerEngine, base_image: str) -> None:
        self.engine = engine
        self.base_image = base_image
        self._ready: str | None = None
        self._lock = trio.Lock()

    async def volume(self) -> str:
        """The name of a complete bundle volume (made now if needed)."""
        if self._ready is not None:
            return self._ready
        async with self._lock:
            if self._ready is None:
                self._ready = await self._ensure()
        return self._ready

    def forget(self) -> None:
        """The volume turned out unusable: check (and remake) it on the next use."""
        self._ready = None

    async def _ensure(self) -> str:
        client = await self.engine.connected()
        try:
            base = await self.engine.call(
                "inspecting the base image", client.images.get, self.base_image
            )
        except ImageNotFound:
            raise ImageNotFound(self.base_image, "base") from None
        name = f"sbx-guest-{bundle_key(str(base.id))}"
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
        elif _volume_exists(api, name):
            return
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
            if not _volume_exists(api, name):
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


def _volume_exists(api: object, name: str) -> bool:
    try:
        api.inspect_volume(name)  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


def _remove_volume(api: object, name: str) -> None:
    with contextlib.suppress(Exception):
        api.remove_volume(name, force=True)  # type: ignore[attr-defined]
