"""Sandboxes as one-replica Swarm services, placed by the swarm's scheduler.

``create`` makes the session's own overlay network (internal when the
session has no network: services cannot use ``none``) and a service pinned
to the image's ID, with no restart, hardened as ``service_spec`` says, with
resource reservations for the scheduler.  ``attach`` waits for the task to
run, finds its node and container, and attaches to that node's engine over
TLS; from there the channel is the Docker backend's.  ``remove`` removes the
service (the node's agent removes its container) and the network.

``list`` reports services by label and, so the reaper and ``sbx gc`` find
them too, per-session networks whose service is gone (ids ``network:...``)
and writable-place volumes left on any ready node (``volume:node:name``).

Must not: talk to a node's engine for anything the manager can answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
import trio

from orchestrator.backends.base import (
    LABEL_MANAGED,
    LABEL_SESSION,
    EventSink,
    ImageDefaults,
    SandboxEvent,
    SandboxInfo,
    SandboxSpec,
    StderrSink,
)
from orchestrator.backends.docker.attach import attach
from orchestrator.backends.docker.backend import _info_from_inspect, image_defaults_from
from orchestrator.backends.docker.image_engine import DockerImageEngine
from orchestrator.backends.swarm.distribution import NodeImages
from orchestrator.backends.swarm.node_stream import NodeBoundStream
from orchestrator.backends.swarm.nodes import Placement, SwarmNodes
from orchestrator.backends.swarm.service_spec import service_definition
from orchestrator.backends.swarm.watch import watch_tasks
from orchestrator.config import Config
from orchestrator.errors import EngineError, ImageNotFound
from orchestrator.resilience import Resilience

__all__ = ["SwarmBackend", "swarm_backend"]

log = structlog.get_logger("orchestrator.swarm")

NETWORK_PREFIX = "network:"
VOLUME_PREFIX = "volume:"
_NETWORK_GONE_WAIT = 20.0
"""How long ``remove`` waits for the task to leave the session's network."""


class SwarmBackend:
    """Docker Swarm mode: a manager to place sandboxes, each node's engine to reach them."""

    name = "swarm"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.resilience = Resilience(config.resilience)
        self.nodes = SwarmNodes(config, self.resilience)
        self.manager = self.nodes.manager
        self.images = NodeImages(self.nodes, config.image_name("base"))
        self.placements: dict[str, Placement] = {}
        self._sinks: list[EventSink] = []

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        settings = self.config.swarm
        image_id, bundle = await self.images.prepare(spec.image)
        api: Any = (await self.manager.connected()).api
        network: dict[str, Any] = await self.manager.call(
            f"creating the network of sandbox {spec.name}",
            api.create_network,
            f"{spec.name}-net",
            driver="overlay",
            internal=not spec.network,
            attachable=False,
            labels=dict(spec.labels),
        )
        definition = service_definition(
            spec,
            image_id=image_id,
            network_id=str(network["Id"]),
            guest_volume=bundle,
            memory_reservation=settings.memory_reservation,
            cpu_reservation=settings.cpu_reservation,
            guest_silence=settings.guest_silence,
        )
        try:
            created: dict[str, Any] = await self.manager.call(
                f"creating sandbox {spec.name} from {spec.image}",
                lambda: api.create_service(**definition),
                image=spec.image,
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._remove_network(str(network["Id"]))
            raise
        return SandboxInfo(
            id=str(created["ID"]),
            name=spec.name,
            image=spec.image,
            status="created",
            labels=dict(spec.labels),
        )

    async def attach(self, sandbox_id: str, on_stderr: StderrSink) -> trio.abc.Stream:
        placement = await self.nodes.locate(sandbox_id, self.config.swarm.start_timeout)
        self.placements[sandbox_id] = placement
        log.info(
            "sandbox placed",
            sandbox=sandbox_id[:12],
            node=placement.node.address,
            container=placement.container_id[:12],
        )
        stream = await attach(
            placement.container_id,
            on_stderr,
            host=placement.engine_url,
            timeout=30.0,
            ssl_context=self.nodes.ssl_context,
        )

        def node_lost() -> None:
            detail = f"its node {placement.node.address} is unreachable"
            log.warning("node lost", sandbox=sandbox_id[:12], node=placement.node.address)
            for sink in list(self._sinks):
                sink(SandboxEvent(sandbox_id=sandbox_id, kind="died", detail=detail))

        return NodeBoundStream(
            stream, placement.node.address, self.nodes.port, node_lost, self.nodes.ssl_context
        )

    async def start(self, sandbox_id: str) -> None:
        """The swarm started the task already (``attach`` waited for it)."""

    async def stop(self, sandbox_id: str, timeout: float = 5.0) -> None:
        placement = self.placements.get(sandbox_id)
        if placement is None:
            return
        engine = self.nodes.engine(placement.node)
        try:
            await engine.call(
                f"stopping sandbox {sandbox_id[:12]}",
                lambda: engine.client.api.stop(
                    placement.container_id, timeout=int(max(1, timeout))
                ),
                timeout=timeout + engine.call_timeout,
            )
        except EngineError as exc:
            if not _gone(exc):
                raise

    async def remove(self, sandbox_id: str) -> None:
        if sandbox_id.startswith(NETWORK_PREFIX):
            await self._remove_network(sandbox_id.removeprefix(NETWORK_PREFIX))
            return
        if sandbox_id.startswith(VOLUME_PREFIX):
            node_id, _, volume = sandbox_id.removeprefix(VOLUME_PREFIX).partition(":")
            await self._remove_volumes(node_id, [volume])
            return
        placement = self.placements.pop(sandbox_id, None)
        api = (await self.manager.connected()).api
        try:
            service: dict[str, Any] = await self.manager.call(
                f"inspecting sandbox {sandbox_id[:12]}", api.inspect_service, sandbox_id
            )
        except EngineError as exc:
            if _gone(exc):
                return
            raise
        networks = [
            str(n.get("Target"))
            for n in (service.get("Spec", {}).get("TaskTemplate", {}).get("Networks") or [])
        ]
        session = ((service.get("Spec") or {}).get("Labels") or {}).get(LABEL_SESSION)
        node_ids = {placement.node.id} if placement is not None else set()
        if placement is None:  # not ours (a dead supervisor's): its task says where it ran
            tasks: list[dict[str, Any]] = await self.manager.call(
                f"finding the tasks of sandbox {sandbox_id[:12]}",
                api.tasks,
                filters={"service": sandbox_id},
            )
            node_ids = {str(t["NodeID"]) for t in tasks if t.get("NodeID")}
        if placement is not None:
            # Killed on its node first: the swarm's own removal waits out a stop grace
            # period before the task leaves its network and volumes.
            engine = self.nodes.engine(placement.node)
            try:
                await engine.call(
                    f"killing sandbox {sandbox_id[:12]}",
                    (await engine.connected()).api.kill,
                    placement.container_id,
                    guarded=False,
                )
            except EngineError as exc:
                log.debug("kill before removal failed", sandbox=sandbox_id[:12], error=str(exc))
        try:
            await self.manager.call(
                f"removing sandbox {sandbox_id[:12]}",
                api.remove_service,
                sandbox_id,
                retry="remove",
                guarded=False,
            )
        except EngineError as exc:
            if not _gone(exc):
                raise
        for network in networks:
            await self._remove_network(network)
        for node_id in node_ids if session else ():
            await self._remove_session_volumes(node_id, str(session))

    async def _remove_session_volumes(self, node_id: str, session: str) -> None:
        try:
            engine = self.nodes.engine(await self.nodes.node(node_id))
        except EngineError:
            return  # a node that left the swarm took its volumes with it
        volumes: dict[str, Any] = await engine.call(
            f"listing the volumes of session {session}",
            (await engine.connected()).api.volumes,
            filters={"label": f"{LABEL_SESSION}={session}"},
        )
        names = [str(v["Name"]) for v in volumes.get("Volumes") or []]
        await self._remove_volumes(node_id, names)

    async def _remove_volumes(self, node_id: str, names: list[str]) -> None:
        """Remove a session's writable places on its node once its container is gone."""
        if not names:
            return
        engine = self.nodes.engine(await self.nodes.node(node_id))
        for name in names:
            with trio.move_on_after(_NETWORK_GONE_WAIT):
                while True:
                    try:
                        await engine.call(
                            f"removing volume {name[:12]}",
                            (await engine.connected()).api.remove_volume,
                            name,
                            guarded=False,
                        )
                        break
                    except EngineError as exc:
                        if _gone(exc):
                            break
                        if "in use" not in str(exc):
                            raise
                    await trio.sleep(0.3)

    async def _remove_network(self, network_id: str) -> None:
        """Remove a session's network once its task has left it (bounded wait)."""
        api = (await self.manager.connected()).api
        with trio.move_on_after(_NETWORK_GONE_WAIT):
            while True:
                try:
                    await self.manager.call(
                        f"removing network {network_id[:12]}",
                        api.remove_network,
                        network_id,
                        guarded=False,
                    )
                    return
                except EngineError as exc:
                    if _gone(exc):
                        return
                    if "active endpoints" not in str(exc) and "in use" not in str(exc):
                        raise
                await trio.sleep(0.3)
        log.warning("a session network outlived its wait; gc removes it", network=network_id[:12])

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        placement = self.placements.get(sandbox_id) or await self.nodes.locate(
            sandbox_id, self.config.swarm.start_timeout
        )
        engine = self.nodes.engine(placement.node)
        data: dict[str, Any] = await engine.call(
            f"inspecting sandbox {sandbox_id[:12]}",
            (await engine.connected()).api.inspect_container,
            placement.container_id,
        )
        info = _info_from_inspect(data)
        details = {
            **info.details,
            "node": placement.node.address,
            "container": placement.container_id,
        }
        return SandboxInfo(
            id=sandbox_id,
            name=info.name,
            image=info.image,
            status=info.status,
            labels=info.labels,
            created=info.created,
            details=details,
        )

    async def list(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        api = (await self.manager.connected()).api
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        services: list[dict[str, Any]] = await self.manager.call(
            "listing sandboxes", api.services, filters=filters
        )
        tasks: list[dict[str, Any]] = await self.manager.call("listing tasks", api.tasks)
        states: dict[str, str] = {}
        for task in tasks:
            state = str((task.get("Status") or {}).get("State", ""))
            service = str(task.get("ServiceID", ""))
            if states.get(service) != "running":
                states[service] = state
        infos = [
            SandboxInfo(
                id=str(row["ID"]),
                name=str(row.get("Spec", {}).get("Name", "")),
                image=str(
                    row.get("Spec", {})
                    .get("TaskTemplate", {})
                    .get("ContainerSpec", {})
                    .get("Image", "")
                ),
                status=states.get(str(row["ID"]), "created"),
                labels=dict(row.get("Spec", {}).get("Labels") or {}),
                created=str(row.get("CreatedAt", "")),
            )
            for row in services
        ]
        names = {f"{info.name}-net" for info in infos}
        networks: list[dict[str, Any]] = await self.manager.call(
            "listing sandbox networks", api.networks, filters=filters
        )
        infos.extend(
            SandboxInfo(
                id=NETWORK_PREFIX + str(row["Id"]),
                name=str(row.get("Name", "")),
                image="",
                status="network",
                labels=dict(row.get("Labels") or {}),
                created=str(row.get("Created", "")),
            )
            for row in networks
            if row.get("Name") not in names and (row.get("Labels") or {}).get(LABEL_MANAGED)
        )
        sessions = {info.labels.get(LABEL_SESSION) for info in infos}
        for node in await self.nodes.ready():
            engine = self.nodes.engine(node)
            volumes: dict[str, Any] = await engine.call(
                f"listing sandbox volumes on {node.address}",
                (await engine.connected()).api.volumes,
                filters={"label": filters["label"]},
            )
            infos.extend(
                SandboxInfo(
                    id=f"{VOLUME_PREFIX}{node.id}:{row['Name']}",
                    name=str(row["Name"]),
                    image="",
                    status="volume",
                    labels=dict(row.get("Labels") or {}),
                )
                for row in volumes.get("Volumes") or []
                if (row.get("Labels") or {}).get(LABEL_SESSION) not in sessions
            )
        return infos

    async def image_exists(self, image: str) -> bool:
        try:
            await self.images.image_id(image)
        except ImageNotFound:
            return False
        return True

    async def root_usage(self, sandbox_id: str) -> int | None:
        return None

    async def image_defaults(self, image: str) -> ImageDefaults:
        api = (await self.manager.connected()).api
        attrs: dict[str, Any] = await self.manager.call(
            f"looking up image {image}", api.inspect_image, image, image=image
        )
        return image_defaults_from(attrs.get("Config") or {})

    async def watch(
        self,
        labels: Mapping[str, str],
        on_event: EventSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # Kept between reconnections: a node lost while the watch reconnects is still told.
        if on_event not in self._sinks:
            self._sinks.append(on_event)
        await watch_tasks(self.nodes, labels, on_event, task_status=task_status)

    async def describe_engine(self) -> dict[str, Any]:
        version = await self.manager.ping()
        nodes = await self.nodes.nodes()
        return {
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "os": f"{version.get('Os')}/{version.get('Arch')}",
            "kernel": version.get("KernelVersion"),
            "swarm_nodes": [f"{n.address} {n.state} {n.availability}" for n in nodes],
            "runtimes": ["runc"],
        }

    async def aclose(self) -> None:
        await self.nodes.aclose()


def _gone(exc: EngineError) -> bool:
    text = str(exc).lower()
    return "not found" in text or "no such" in text or "is not running" in text


def swarm_image_engine(config: Config) -> DockerImageEngine:
    """Images are built on the manager's engine; sessions copy them to the nodes."""
    resilience = Resilience(config.resilience)
    return DockerImageEngine(SwarmNodes(config, resilience).manager)


def swarm_backend(config: Config) -> SwarmBackend:
    """The Swarm backend for ``config`` (registered as ``engine.backend = "swarm"``)."""
    return SwarmBackend(config)
