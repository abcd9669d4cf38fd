"""The swarm's nodes as sbx sees them: which are ready, and an engine client for each.

The manager places tasks; sbx then speaks to the engine of the node a task
landed on -- for the channel (attach), the guest bundle and images -- over
TCP with mutual TLS, at the address the swarm knows the node by and the
configured ``swarm.engine_port``.

Must not: place anything itself (the swarm's scheduler does).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import docker.tls
import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.config import Config
from orchestrator.errors import ConfigError, EngineError, SandboxGone
from orchestrator.resilience import Resilience

__all__ = ["Placement", "SwarmNode", "SwarmNodes", "TlsFiles"]

_ENDED = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")
"""Task states from which a task never runs again."""


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    cert: str
    key: str

    def docker_py(self) -> docker.tls.TLSConfig:
        return docker.tls.TLSConfig(client_cert=(self.cert, self.key), ca_cert=self.ca, verify=True)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True)
class SwarmNode:
    id: str
    address: str
    hostname: str
    state: str
    """``ready``, ``down``, ``unknown``, ``disconnected``."""
    availability: str
    """``active``, ``pause``, ``drain``."""


@dataclass(frozen=True)
class Placement:
    """Where a session's sandbox runs: the node, its engine's URL, the container."""

    node: SwarmNode
    engine_url: str
    container_id: str


class SwarmNodes:
    """The manager's view of the nodes, and one engine client per node."""

    def __init__(self, config: Config, resilience: Resilience) -> None:
        settings = config.swarm
        files = (settings.tls_ca, settings.tls_cert, settings.tls_key)
        if any(files) and not all(files):
            raise ConfigError(
                "swarm.tls_ca, swarm.tls_cert and swarm.tls_key go together; set all three"
            )
        self.tls = TlsFiles(*(str(f) for f in files)) if all(files) else None
        self.ssl_context = self.tls.context() if self.tls else None
        self.port = settings.engine_port
        self.config = config
        self.resilience = resilience
        self.manager = self._engine(settings.manager or config.engine.docker_host)
        self._engines: dict[str, DockerEngine] = {}

    def _engine(self, url: str | None, node: SwarmNode | None = None) -> DockerEngine:
        return DockerEngine(
            url,
            max_concurrent_calls=self.config.engine.max_concurrent_calls,
            call_timeout=self.config.engine.call_timeout,
            resilience=self.resilience,
            tls=self.tls.docker_py() if self.tls and url else None,
            breaker="engine" if node is None else f"engine:{node.address}",
            breaker_what=(
                "the swarm manager's engine" if node is None else f"node {node.address}'s engine"
            ),
        )

    def engine_url(self, node: SwarmNode) -> str:
        return f"tcp://{node.address}:{self.port}"

    def engine(self, node: SwarmNode) -> DockerEngine:
        """The client of ``node``'s own engine (made once)."""
        engine = self._engines.get(node.id)
        if engine is None:
            engine = self._engines[node.id] = self._engine(self.engine_url(node), node)
        return engine

    async def nodes(self) -> list[SwarmNode]:
        api = (await self.manager.connected()).api
        rows: list[dict[str, Any]] = await self.manager.call("listing the swarm's nodes", api.nodes)
        return [_node(row) for row in rows]

    async def ready(self) -> list[SwarmNode]:
        """Nodes that take new sandboxes: ready and active (not drained or paused)."""
        return [n for n in await self.nodes() if n.state == "ready" and n.availability == "active"]

    async def node(self, node_id: str) -> SwarmNode:
        api = (await self.manager.connected()).api
        row: dict[str, Any] = await self.manager.call(
            f"inspecting swarm node {node_id[:12]}", api.inspect_node, node_id
        )
        return _node(row)

    async def locate(self, service_id: str, timeout: float) -> Placement:
        """Wait for the service's one task to run; where it runs."""
        api = (await self.manager.connected()).api
        last = "no task yet"
        with trio.move_on_after(timeout):
            while True:
                tasks: list[dict[str, Any]] = await self.manager.call(
                    f"finding the task of sandbox {service_id[:12]}",
                    api.tasks,
                    filters={"service": service_id},
                )
                for task in tasks:
                    status = task.get("Status") or {}
                    state = str(status.get("State", ""))
                    container = (status.get("ContainerStatus") or {}).get("ContainerID")
                    if state == "running" and container and task.get("NodeID"):
                        node = await self.node(str(task["NodeID"]))
                        return Placement(node, self.engine_url(node), str(container))
                    if state in _ENDED:
                        raise SandboxGone(
                            f"the swarm could not run sandbox {service_id[:12]}: task {state}"
                            f" ({status.get('Err') or status.get('Message') or 'no reason given'})"
                        )
                    last = f"task {state}: {status.get('Message') or status.get('Err') or ''}"
                await trio.sleep(0.1)
        raise EngineError(
            f"the swarm did not run sandbox {service_id[:12]} within {timeout:g} s ({last}); "
            "check `docker node ls` for ready nodes with room, or raise swarm.start_timeout"
        ).with_hint(retryable=True, remedy="retry once the swarm has a ready node with room")

    async def aclose(self) -> None:
        for engine in [self.manager, *self._engines.values()]:
            await engine.aclose()
        self._engines.clear()


def _node(row: dict[str, Any]) -> SwarmNode:
    status = row.get("Status") or {}
    spec = row.get("Spec") or {}
    description = row.get("Description") or {}
    return SwarmNode(
        id=str(row.get("ID", "")),
        address=str(status.get("Addr", "")),
        hostname=str(description.get("Hostname", "")),
        state=str(status.get("State", "unknown")),
        availability=str(spec.get("Availability", "active")),
    )
