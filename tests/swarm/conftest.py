"""Failure tests against a real three-node swarm, made by ``cluster.sh`` for ``make test-swarm``.

They need the swarm ``run.sh`` starts (``SBXTEST_SWARM_DIR`` and the
``SBX_SWARM__*`` settings); without one there is nothing here to collect --
``make test-swarm`` is the only way in, and it always makes one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator, load_config

SWARM_DIR = os.environ.get("SBXTEST_SWARM_DIR", "")
IMAGE = os.environ.get("SBXTEST_IMAGE", "base")
CLUSTER = Path(__file__).with_name("cluster.sh")

collect_ignore_glob = [] if SWARM_DIR else ["test_*.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/swarm" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    cfg = load_config()
    cfg.engine.backend = "swarm"
    cfg.session.kill_grace = 1.0
    cfg.memory.root = tmp_path / "memories"
    return cfg


@pytest.fixture
async def orch(config: Config) -> AsyncIterator[Orchestrator]:
    async with Orchestrator(config) as orchestrator:
        yield orchestrator


def kill_node(number: int) -> None:
    """Stop node ``number`` the hard way: its engine, containerd, shims and sandboxes."""
    subprocess.run([str(CLUSTER), "kill-node", SWARM_DIR, str(number)], check=True)


def node_number(address: str) -> int:
    """``cluster.sh`` gives node N the address 192.168.77.1N."""
    return int(address.rsplit(".", 1)[1]) - 10
