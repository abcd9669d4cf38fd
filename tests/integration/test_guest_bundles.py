"""The guest bundle volumes: made labelled, made again when they go, collected when stale.

Every guest version has its bundle (``sbx-guest-<key>``, about 50 MB); an
upgrade leaves the old one behind, and ``sbx gc`` collects those no sandbox
uses.  A bundle removed under a running supervisor -- by ``sbx gc`` of
another version, or ``docker volume prune`` -- is made again at its next
sandbox, even when the engine has meanwhile left an empty volume of that name.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import docker
import pytest

from orchestrator import Orchestrator
from orchestrator.backends.docker.backend import DockerBackend
from orchestrator.backends.docker.guest_volume import (
    BUNDLE_PREFIX,
    LABEL_GUEST_BUNDLE,
    collect_stale,
)

from .conftest import IMAGE


def _backend(orch: Orchestrator) -> DockerBackend:
    backend = orch.supervisor.backend
    assert isinstance(backend, DockerBackend)
    return backend


@pytest.fixture
def stale_bundles(docker_client: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """An unused bundle of another guest version, and one a running container mounts."""
    tag = secrets.token_hex(4)
    unused = docker_client.volumes.create(f"{BUNDLE_PREFIX}test{tag}")
    busy = docker_client.volumes.create(f"{BUNDLE_PREFIX}test{tag}busy")
    holder = docker_client.containers.run(
        "sbx-base",
        ["sleep", "300"],
        entrypoint=[],
        detach=True,
        network_disabled=True,
        volumes={busy.name: {"bind": "/x", "mode": "ro"}},
        labels={"io.sbx.test": "bundle-holder"},
    )
    try:
        yield str(unused.name), str(busy.name)
    finally:
        holder.remove(force=True)
        for name in (unused.name, busy.name):
            try:
                docker_client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass


def _volume_names(client: docker.DockerClient) -> set[str]:
    return {str(v.name) for v in client.volumes.list(filters={"name": BUNDLE_PREFIX})}


async def test_gc_collects_unused_bundles_of_other_guests_and_keeps_the_rest(
    orch: Orchestrator, docker_client: docker.DockerClient, stale_bundles: tuple[str, str]
) -> None:
    unused, busy = stale_bundles
    async with orch.session(image=IMAGE, memories=False) as s:
        assert (await s.exec(["true"])).exit_code == 0
    backend = _backend(orch)
    current = await backend.guest_volumes.current()
    assert current is not None and current in _volume_names(docker_client)
    assert LABEL_GUEST_BUNDLE in (docker_client.volumes.get(current).attrs["Labels"] or {})

    # `sbx gc` leaves bundles made in the last minutes alone (one may be on its way
    # into use), and says what it removed in its JSON.
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "gc", "--json"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert unused not in json.loads(done.stdout)["guest_bundles"]
    assert unused in _volume_names(docker_client)

    removed = await collect_stale(backend.engine, current, older_than=0)
    assert unused in removed
    assert busy not in removed and current not in removed
    left = _volume_names(docker_client)
    assert unused not in left
    assert busy in left and current in left


async def test_a_bundle_removed_under_a_running_supervisor_is_made_again(
    orch: Orchestrator, docker_client: docker.DockerClient
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        assert (await s.exec(["true"])).exit_code == 0
    current = await _backend(orch).guest_volumes.current()
    assert current is not None

    docker_client.volumes.get(current).remove()
    async with orch.session(image=IMAGE, memories=False) as s:
        assert (await s.exec(["echo", "after removal"])).stdout == b"after removal\n"

    # As the engine leaves it when a container names a bundle that is gone: empty.
    docker_client.volumes.get(current).remove()
    docker_client.volumes.create(current)
    async with orch.session(image=IMAGE, memories=False) as s:
        assert (await s.exec(["echo", "after an empty one"])).stdout == b"after an empty one\n"
    assert LABEL_GUEST_BUNDLE in (docker_client.volumes.get(current).attrs["Labels"] or {})
