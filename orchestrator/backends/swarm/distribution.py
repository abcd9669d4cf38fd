"""Images and the guest bundle on every node, without a registry.

A session's image is resolved on the manager's engine to its ID; the
service names that ID (pinned: it cannot be pulled, nor mean another
image later).  A ready node without it gets it streamed from the manager,
``docker save`` into ``docker load`` through sbx, once.  The guest bundle
volume is made on each node by the Docker backend's own ``GuestVolumes``.

Must not: push to or pull from a registry.
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.backends.docker.guest_volume import GuestVolumes
from orchestrator.backends.swarm.nodes import SwarmNode, SwarmNodes
from orchestrator.errors import EngineError, ImageNotFound

__all__ = ["NodeImages"]

log = structlog.get_logger("orchestrator.swarm")


class NodeImages:
    """Makes sure every ready node holds an image (by ID) and the guest bundle."""

    def __init__(self, nodes: SwarmNodes, base_image: str) -> None:
        self.nodes = nodes
        self.base_image = base_image
        self._present: set[tuple[str, str]] = set()
        self._bundles: dict[str, GuestVolumes] = {}
        self._lock = trio.Lock()

    async def image_id(self, image: str) -> str:
        api = (await self.nodes.manager.connected()).api
        attrs: dict[str, Any] = await self.nodes.manager.call(
            f"looking up image {image}", api.inspect_image, image, image=image
        )
        return str(attrs["Id"])

    async def prepare(self, image: str) -> tuple[str, str]:
        """``image``'s ID and the guest bundle's volume name, both on every ready node."""
        image_id = await self.image_id(image)
        base_id = await self.image_id(self.base_image)
        ready = await self.nodes.ready()
        if not ready:
            raise EngineError(
                "the swarm has no ready, active node; see `docker node ls` (drained or down "
                "nodes take no sandboxes)"
            ).with_hint(retryable=True, remedy="retry once a node is ready")
        async with self._lock:
            bundle = ""
            async with trio.open_nursery() as nursery:
                for node in ready:
                    nursery.start_soon(self._ensure, node, self.base_image, base_id)
                    if image_id != base_id:
                        nursery.start_soon(self._ensure, node, image, image_id)
            for node in ready:
                bundle = await self._bundle(node).volume()
        return image_id, bundle

    def _bundle(self, node: SwarmNode) -> GuestVolumes:
        volumes = self._bundles.get(node.id)
        if volumes is None:
            volumes = self._bundles[node.id] = GuestVolumes(
                self.nodes.engine(node), self.base_image
            )
        return volumes

    async def _ensure(self, node: SwarmNode, image: str, image_id: str) -> None:
        if (node.id, image_id) in self._present:
            return
        engine = self.nodes.engine(node)
        try:
            await engine.call(
                f"looking up {image} on node {node.address}",
                (await engine.connected()).api.inspect_image,
                image_id,
                image=image,
            )
        except ImageNotFound:
            log.info("copying an image to a node", image=image, node=node.address)
            await self._copy(engine, node, image, image_id)
        self._present.add((node.id, image_id))

    async def _copy(self, engine: DockerEngine, node: SwarmNode, image: str, image_id: str) -> None:
        source: Any = (await self.nodes.manager.connected()).api
        target: Any = (await engine.connected()).api

        def copy() -> None:
            for message in target.load_image(source.get_image(image)):
                if isinstance(message, dict) and message.get("error"):
                    raise EngineError(f"loading {image} on {node.address}: {message['error']}")

        await engine.call(
            f"copying {image} to node {node.address}", copy, timeout=30 * 60, image=image
        )
        loaded: dict[str, Any] = await engine.call(
            f"checking {image} on node {node.address}", target.inspect_image, image, image=image
        )
        if loaded.get("Id") != image_id:
            raise EngineError(
                f"node {node.address} holds another {image} than the manager after loading it"
            )
