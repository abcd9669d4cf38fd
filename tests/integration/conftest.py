"""Fixtures for tests against the real Docker Engine and the real sandbox images.

These tests need `docker info` to work and the images built (`make images`);
`make test` and `.ci/run` arrange both.  They fail rather than skip when the
engine is missing: a skipped integration suite would hide exactly the gap it
exists to catch.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest

from orchestrator import Config, Orchestrator, load_config

IMAGE = os.environ.get("SBXTEST_IMAGE", "code-runner")

RUNTIME = os.environ.get("SBX_SANDBOX__RUNTIME") or None
"""The OCI runtime the sandboxes of this run use (``SBX_SANDBOX__RUNTIME=runsc``: gVisor;
the config reads the same variable)."""
GVISOR = RUNTIME is not None and ("runsc" in RUNTIME or "gvisor" in RUNTIME)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)
        differs = item.get_closest_marker("gvisor_differs")
        if GVISOR and differs is not None:
            # Run, and expected to fail for the documented reason: a pass is news.
            reason = differs.args[0] if differs.args else "differs under gVisor"
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"under gVisor: {reason}"))


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    cfg = load_config()
    cfg.session.kill_grace = 1.0
    cfg.memory.root = tmp_path / "memories"  # never the user's own memory store
    return cfg


@pytest.fixture
async def orch(config: Config) -> AsyncIterator[Orchestrator]:
    async with Orchestrator(config) as orchestrator:
        yield orchestrator


def containers_of_session(client: docker.DockerClient, session_id: str) -> list[str]:
    return [
        c.id
        for c in client.containers.list(all=True, filters={"label": f"io.sbx.session={session_id}"})
    ]
