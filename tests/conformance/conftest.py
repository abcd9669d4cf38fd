"""The backend conformance suite: one set of tests every backend must pass.

Each test runs once per backend named in ``SBXTEST_BACKENDS`` (comma-separated,
default ``docker``), through the public API and the backend interface only --
never an engine's own client -- so a new backend is held to exactly what the
Docker backend is held to.  ``make test`` runs it against the local Docker
Engine; ``make test-swarm`` against a three-node swarm (``SBXTEST_BACKENDS=swarm``
with the ``SBX_SWARM__*`` settings of that swarm in the environment).

Like the integration tests, these use the real engine and real images and fail
rather than skip when either is missing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import trio

from orchestrator import Config, Orchestrator, load_config
from orchestrator.backends.base import SandboxBackend

BACKENDS = [name for name in os.environ.get("SBXTEST_BACKENDS", "docker").split(",") if name]
IMAGE = os.environ.get("SBXTEST_IMAGE", "code-runner")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/conformance" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config(tmp_path: Path, backend_name: str) -> Config:
    cfg = load_config()
    cfg.engine.backend = backend_name
    cfg.session.kill_grace = 1.0
    cfg.memory.root = tmp_path / "memories"  # never the user's own memory store
    return cfg


@pytest.fixture
async def orch(config: Config) -> AsyncIterator[Orchestrator]:
    async with Orchestrator(config) as orchestrator:
        yield orchestrator


async def sandboxes(backend: SandboxBackend, labels: Mapping[str, str]) -> list[str]:
    """Ids of the backend's sandboxes carrying ``labels``, running or not."""
    return [info.id for info in await backend.list(labels)]


async def running(backend: SandboxBackend, labels: Mapping[str, str]) -> list[str]:
    """Ids of the backend's running sandboxes carrying ``labels``."""
    return [info.id for info in await backend.list(labels) if info.status == "running"]


async def wait_until_none(
    backend: SandboxBackend, labels: Mapping[str, str], seconds: float = 30
) -> list[str]:
    """Poll until no sandbox carries ``labels`` or ``seconds`` pass; what is left."""
    left = await sandboxes(backend, labels)
    with trio.move_on_after(seconds):
        while left:
            await trio.sleep(0.2)
            left = await sandboxes(backend, labels)
    return left
