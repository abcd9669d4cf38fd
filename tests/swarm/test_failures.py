"""A swarm losing, draining and getting back nodes: sessions learn it, the platform goes on.

The node kill runs last: it leaves the swarm one node short for good.
"""

from __future__ import annotations

import docker
import trio

from orchestrator import Orchestrator, Session
from orchestrator.backends.swarm.backend import SwarmBackend

from .conftest import IMAGE, kill_node, node_number


def _node_of(orch: Orchestrator, session: Session) -> str:
    backend = orch.backend
    assert isinstance(backend, SwarmBackend)
    return backend.placements[session.sandbox_id].node.address


async def _open(orch: Orchestrator, count: int) -> list[Session]:
    sessions: list[Session] = []

    async def one() -> None:
        sessions.append(await orch.open_session(image=IMAGE, memories=False))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return sessions


def _set_availability(orch: Orchestrator, address: str, availability: str) -> None:
    backend = orch.backend
    assert isinstance(backend, SwarmBackend)
    api: docker.APIClient = backend.manager.client.api
    for row in api.nodes():
        if row["Status"]["Addr"] == address:
            spec = dict(row["Spec"], Availability=availability)
            api.update_node(row["ID"], row["Version"]["Index"], spec)
            return
    raise AssertionError(f"no node at {address}")


async def test_sessions_are_spread_over_the_nodes(orch: Orchestrator) -> None:
    # Only node 1 was given the image (cluster.sh): the others got it from sbx.
    sessions = await _open(orch, 6)
    try:
        nodes = {_node_of(orch, s) for s in sessions}
        outputs = [(await s.exec("echo ok")).stdout for s in sessions]
    finally:
        for s in sessions:
            await s.close()
    assert len(nodes) == 3
    assert outputs == [b"ok\n"] * 6
    backend = orch.backend
    assert isinstance(backend, SwarmBackend)
    base = await backend.images.image_id(orch.config.image_name("base"))
    for node in await backend.nodes.ready():
        engine = backend.nodes.engine(node)
        held = await trio.to_thread.run_sync(engine.client.api.inspect_image, base)
        assert held["Id"] == base, node.address


async def test_a_drained_node_takes_no_new_sessions(orch: Orchestrator) -> None:
    drained = "192.168.77.13"
    await trio.to_thread.run_sync(_set_availability, orch, drained, "drain")
    try:
        sessions = await _open(orch, 4)
        try:
            nodes = {_node_of(orch, s) for s in sessions}
            outputs = [(await s.exec("echo ok")).stdout for s in sessions]
        finally:
            for s in sessions:
                await s.close()
    finally:
        await trio.to_thread.run_sync(_set_availability, orch, drained, "active")
    assert drained not in nodes
    assert outputs == [b"ok\n"] * 4


async def test_a_killed_node_crashes_its_sessions_and_the_rest_go_on(orch: Orchestrator) -> None:
    sessions = await _open(orch, 6)
    on_node = {s.id: _node_of(orch, s) for s in sessions}
    victim = next(
        a for a in sorted(set(on_node.values())) if a != "192.168.77.11"
    )  # not the leader
    lost = [s for s in sessions if on_node[s.id] == victim]
    kept = [s for s in sessions if on_node[s.id] != victim]
    assert lost and kept
    await trio.to_thread.run_sync(kill_node, node_number(victim))
    with trio.fail_after(10):  # "within a few seconds"
        while any(s.state != "crashed" for s in lost):
            await trio.sleep(0.1)
    causes = [s.failure for s in lost]
    for s in kept:
        assert (await s.exec("echo still here")).stdout == b"still here\n"
    # Once the manager knows the node is gone, new sessions go to the others.
    backend = orch.backend
    assert isinstance(backend, SwarmBackend)
    with trio.fail_after(60):
        while victim in {n.address for n in await backend.nodes.ready()}:
            await trio.sleep(0.5)
    fresh = await _open(orch, 4)
    try:
        placed = {_node_of(orch, s) for s in fresh}
        outputs = [(await s.exec("echo fresh")).stdout for s in fresh]
    finally:
        for s in [*fresh, *sessions]:
            await s.close()
    assert all(f"node {victim} is unreachable" in str(cause) for cause in causes), causes
    assert victim not in placed
    assert outputs == [b"fresh\n"] * 4
