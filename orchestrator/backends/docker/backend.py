"""Sandboxes as containers on a Docker Engine, hardened by default (decision 7).

Every container is created non-root, with all capabilities dropped,
``no-new-privileges``, a pids limit, memory equal to memory+swap, a CPU
quota, no network unless asked, a read-only root with sized tmpfs mounts,
an init process, a capped log, and labels naming its session, owner,
supervisor and expiry.  It is created with stdin open (and, through
docker-py, ``StdinOnce``) and ``auto_remove``: when the orchestrator's
attached stream closes, the guest exits and the engine removes the
container.

Only ``SandboxSpec`` fields reach the engine; callers cannot pass raw engine
options, so nothing here can be asked for privileges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
import trio

from orchestrator.backends.base import (
    LABEL_SNAPSHOT_CLIENT,
    LABEL_SNAPSHOT_FILES,
    SNAPSHOT_FILES_ROOT,
    EventSink,
    ImageDefaults,
    SandboxInfo,
    SandboxSpec,
    SnapshotCommit,
    StderrSink,
)
from orchestrator.backends.docker.attach import attach
from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.backends.docker.events import watch_events
from orchestrator.backends.docker.guest_volume import GuestVolumes
from orchestrator.backends.docker.host_config import host_config_for
from orchestrator.backends.docker.snapshot_commit import commit_snapshot
from orchestrator.config import Config
from orchestrator.errors import EngineError, ImageNotFound
from orchestrator.images.guest_bundle import guest_command
from orchestrator.resilience import Resilience

__all__ = ["DockerBackend", "docker_backend", "host_config_for"]

log = structlog.get_logger("orchestrator.docker")


_SNAPSHOT_FILES = re.compile(re.escape(SNAPSHOT_FILES_ROOT) + r"/[0-9a-f]{12}")


def image_defaults_from(config: Mapping[str, Any]) -> ImageDefaults:
    """An image config's WORKDIR and USER as session defaults (root's USER is not one),
    and what a snapshot's fork restores (only a directory of the shape sbx writes)."""
    workdir = str(config.get("WorkingDir") or "")
    user = str(config.get("User") or "")
    root = user.split(":", 1)[0] in ("", "0", "root")
    labels = config.get("Labels") or {}
    files = str(labels.get(LABEL_SNAPSHOT_FILES) or "")
    return ImageDefaults(
        workdir=workdir if workdir not in ("", "/") else None,
        user=None if root else user,
        snapshot_files=files if _SNAPSHOT_FILES.fullmatch(files) else None,
        snapshot_client=labels.get(LABEL_SNAPSHOT_CLIENT) or None,
    )


class DockerBackend:
    """The default backend: the local (or DOCKER_HOST) Docker Engine."""

    name = "docker"

    def __init__(
        self,
        engine: DockerEngine,
        *,
        attach_timeout: float = 30.0,
        base_image: str = "sbx-base:latest",
    ) -> None:
        self.engine = engine
        self.resilience = engine.resilience
        """Its retries and the engine's breaker; the runtime adds its own breakers here."""
        self.attach_timeout = attach_timeout
        self._exec_targets: dict[str, Any] = {}
        self.guest_volumes = GuestVolumes(engine, base_image)
        """The guest bundle every sandbox mounts at /opt/sbx, whatever its image."""

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        api = (await self.engine.connected()).api
        bundle = await self.guest_volumes.volume()
        host_config = api.create_host_config(**host_config_for(spec, guest_volume=bundle))
        command = list(spec.command) if spec.command is not None else []

        def create() -> dict[str, Any]:
            result: dict[str, Any] = api.create_container(
                image=spec.image,
                command=command,
                entrypoint=guest_command(),
                name=spec.name,
                user="0:0",  # the guest's; it runs what it starts as spec.user
                environment=dict(spec.env),
                working_dir=spec.workdir,
                labels=dict(spec.labels),
                stdin_open=True,
                tty=False,
                host_config=host_config,
                network_disabled=not spec.network,
            )
            return result

        async def remove_partial() -> None:
            # A try that failed may still have made the container (the engine answered
            # late, or failed after creating it): remove it under its name, so the next try
            # can take the name and nothing made by a failed try is ever started.
            await self._remove_quietly(spec.name)

        created = await self.engine.call(
            f"creating sandbox {spec.name} from {spec.image}",
            create,
            image=spec.image,
            retry="create",
            before_retry=remove_partial,
        )
        return SandboxInfo(
            id=str(created["Id"]),
            name=spec.name,
            image=spec.image,
            status="created",
            labels=dict(spec.labels),
        )

    async def watch(
        self,
        labels: Mapping[str, str],
        on_event: EventSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await watch_events(self.engine.base_url, labels, on_event, task_status=task_status)

    async def attach(self, sandbox_id: str, on_stderr: StderrSink) -> trio.abc.Stream:
        return await attach(
            sandbox_id, on_stderr, host=self.engine.base_url, timeout=self.attach_timeout
        )

    async def start(self, sandbox_id: str) -> None:
        api = (await self.engine.connected()).api
        await self.engine.call(
            f"starting sandbox {sandbox_id[:12]}", api.start, sandbox_id, retry="start"
        )

    async def stop(self, sandbox_id: str, timeout: float = 5.0) -> None:
        api = (await self.engine.connected()).api
        try:
            await self.engine.call(
                f"stopping sandbox {sandbox_id[:12]}",
                lambda: api.stop(sandbox_id, timeout=int(max(1, timeout))),
                timeout=timeout + self.engine.call_timeout,
            )
        except EngineError as exc:
            if not _gone(exc):
                raise

    async def remove(self, sandbox_id: str) -> None:
        """Remove by force and return once the engine no longer has it.

        A removal already under way (auto-remove after the guest exited) is waited
        for: it may take a minute for a runtime tearing down many processes, and the
        caller's deadline, not this answer, decides how long to wait.
        """
        api = (await self.engine.connected()).api
        try:
            await self.engine.call(
                f"removing sandbox {sandbox_id[:12]}",
                api.remove_container,
                sandbox_id,
                force=True,
                v=True,
                retry="remove",
                guarded=False,
            )
        except EngineError as exc:
            if "already in progress" in str(exc).lower():
                await self._wait_removed(sandbox_id)
            elif not _gone(exc):
                raise

    async def _wait_removed(self, sandbox_id: str) -> None:
        api = (await self.engine.connected()).api
        pause = 0.05
        while True:
            try:
                await self.engine.call(
                    f"inspecting sandbox {sandbox_id[:12]}",
                    api.inspect_container,
                    sandbox_id,
                    guarded=False,
                )
            except EngineError as exc:
                if _gone(exc):
                    return
                raise
            await trio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _remove_quietly(self, name: str) -> None:
        """Remove the container ``name`` if there is one; a failure here is the next
        try's to report."""
        try:
            await self.remove(name)
        except EngineError as exc:
            log.warning("could not remove a failed try's container", name=name, error=str(exc))

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        api = (await self.engine.connected()).api
        data: dict[str, Any] = await self.engine.call(
            f"inspecting sandbox {sandbox_id[:12]}",
            api.inspect_container,
            sandbox_id,
            retry="inspect",
        )
        return _info_from_inspect(data)

    async def list(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        api = (await self.engine.connected()).api
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        rows: list[dict[str, Any]] = await self.engine.call(
            "listing sandboxes", api.containers, all=True, filters=filters
        )
        return [
            SandboxInfo(
                id=str(row["Id"]),
                name=str((row.get("Names") or ["?"])[0]).lstrip("/"),
                image=str(row.get("Image", "")),
                status=str(row.get("State", "")),
                labels=dict(row.get("Labels") or {}),
                created=str(row.get("Created", "")),
            )
            for row in rows
        ]

    async def image_exists(self, image: str) -> bool:
        api = (await self.engine.connected()).api
        try:
            await self.engine.call(
                f"looking up image {image}",
                api.inspect_image,
                image,
                image=image,
                retry="inspect",
            )
        except ImageNotFound:
            return False
        return True

    async def root_usage(self, sandbox_id: str) -> int | None:
        api = (await self.engine.connected()).api
        listed: list[dict[str, Any]] = await self.engine.call(
            f"measuring sandbox {sandbox_id[:12]}'s root",
            api.containers,
            all=True,
            filters={"id": sandbox_id},
            size=True,
        )
        size = listed[0].get("SizeRw") if listed else None
        return int(size) if isinstance(size, int) else None

    async def image_defaults(self, image: str) -> ImageDefaults:
        api = (await self.engine.connected()).api
        attrs: dict[str, Any] = await self.engine.call(
            f"looking up image {image}", api.inspect_image, image, image=image, retry="inspect"
        )
        config = attrs.get("Config") or {}
        return image_defaults_from(config)

    async def commit_snapshot(
        self, sandbox_id: str, commit: SnapshotCommit, *, timeout: float
    ) -> str:
        return await commit_snapshot(self.engine, sandbox_id, commit, timeout=timeout)

    async def describe_engine(self) -> dict[str, Any]:
        version = await self.engine.ping()
        info: dict[str, Any] = await self.engine.call(
            "asking the Docker Engine for its configuration", (await self.engine.connected()).info
        )
        return {
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "os": f"{version.get('Os')}/{version.get('Arch')}",
            "kernel": version.get("KernelVersion"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "runtimes": sorted((info.get("Runtimes") or {}).keys()),
            "default_runtime": info.get("DefaultRuntime"),
        }

    async def native_exec(self, sandbox_id: str, argv: Sequence[str]) -> int:
        """Run ``argv`` with the engine's own exec (docker-py ``exec_run``).

        Not a call path: a baseline for ``sbx bench`` and a way in for
        debugging a guest that does not answer.
        """
        client = await self.engine.connected()
        container: Any = self._exec_targets.get(sandbox_id)
        if container is None:
            container = await self.engine.call(
                f"looking up sandbox {sandbox_id[:12]}", client.containers.get, sandbox_id
            )
            self._exec_targets = {sandbox_id: container}

        def run() -> int:
            exit_code, _ = container.exec_run(list(argv))
            return int(exit_code if exit_code is not None else -1)

        return await self.engine.call(f"docker exec in {sandbox_id[:12]}", run)

    async def aclose(self) -> None:
        await self.engine.aclose()


def _gone(exc: EngineError) -> bool:
    text = str(exc).lower()
    return (
        "not found" in text
        or "no such container" in text
        or "already in progress" in text
        or "is not running" in text
    )


def _info_from_inspect(data: dict[str, Any]) -> SandboxInfo:
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    state = data.get("State") or {}
    details = {
        "user": config.get("User"),
        "read_only": host.get("ReadonlyRootfs"),
        "cap_drop": host.get("CapDrop"),
        "cap_add": host.get("CapAdd"),
        "security_opt": host.get("SecurityOpt"),
        "privileged": host.get("Privileged"),
        "network_mode": host.get("NetworkMode"),
        "pids_limit": host.get("PidsLimit"),
        "memory": host.get("Memory"),
        "memory_swap": host.get("MemorySwap"),
        "nano_cpus": host.get("NanoCpus"),
        "auto_remove": host.get("AutoRemove"),
        "init": host.get("Init"),
        "tmpfs": host.get("Tmpfs"),
        "binds": host.get("Binds"),
        "mounts": host.get("Mounts"),
        "runtime": host.get("Runtime"),
        "log_config": host.get("LogConfig"),
        "stdin_once": config.get("StdinOnce"),
        "open_stdin": config.get("OpenStdin"),
        "pid": state.get("Pid"),
        "oom_killed": state.get("OOMKilled"),
    }
    return SandboxInfo(
        id=str(data.get("Id")),
        name=str(data.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        status=str(state.get("Status", "")),
        labels=dict(config.get("Labels") or {}),
        created=str(data.get("Created", "")),
        details=details,
    )


def docker_backend(config: Config) -> DockerBackend:
    """The Docker backend for ``config`` (registered as ``engine.backend = "docker"``)."""
    engine = DockerEngine(
        config.engine.docker_host,
        max_concurrent_calls=config.engine.max_concurrent_calls,
        call_timeout=config.engine.call_timeout,
        resilience=Resilience(config.resilience),
    )
    return DockerBackend(engine, base_image=config.image_name("base"))
