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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


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
