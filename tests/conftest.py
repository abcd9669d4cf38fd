"""Shared fixtures: a fake-backend orchestrator for unit tests."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import structlog

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.images.assets import guest_files


@pytest.fixture(autouse=True, scope="session")
def _no_writes_to_the_users_own_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Processes the tests start (servers, `sbx run`, a supervisor to be killed) use the
    default configuration; keep their memory store and agent runs out of the home directory."""
    saved = {name: os.environ.get(name) for name in ("SBX_MEMORY__ROOT", "SBX_API__RUNS_DIR")}
    os.environ["SBX_MEMORY__ROOT"] = str(tmp_path_factory.mktemp("memories"))
    os.environ["SBX_API__RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def busy_cpu() -> Iterator[None]:
    """A process that keeps one core busy while the test runs: races that a quiet
    machine hides (a cancel landing at an unlucky checkpoint) show up under load."""
    hog = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


@pytest.fixture(autouse=True)
def _fresh_logging_config() -> Iterator[None]:
    """Each test starts from structlog's defaults (a CLI test may have set a level)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def guest_module(tmp_path: Path) -> Iterator[Callable[[str], ModuleType]]:
    """Import modules of the guest package as an image carries it (with its copy of the
    protocol), from a scratch directory, and forget them afterwards."""
    root = tmp_path / "guest"
    for name, data in guest_files().items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    sys.path.insert(0, str(root))
    try:
        yield lambda name: importlib.import_module(f"sbx_guest.{name}")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "sbx_guest" or m.startswith("sbx_guest.")]:
            del sys.modules[name]


@pytest.fixture
def fake_config(tmp_path: Path) -> Config:
    """Defaults, with the guest's roots moved into a temp dir (it runs on the host)."""
    workspace = tmp_path / "workspace"
    scratch = tmp_path / "scratch"
    workspace.mkdir()
    scratch.mkdir()
    config = Config()
    config.sandbox.allowed_roots = [str(workspace), str(scratch)]
    config.sandbox.workdir = str(workspace)
    config.session.kill_grace = 0.5
    config.memory.root = tmp_path / "memories"
    config.code_execution.outputs_dir = str(workspace / "outputs")
    config.shutdown_timeout = 5
    return config


@pytest.fixture
async def fake_backend() -> AsyncIterator[FakeBackend]:
    backend = FakeBackend()
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
async def orch(fake_config: Config, fake_backend: FakeBackend) -> AsyncIterator[Orchestrator]:
    async with Orchestrator(fake_config, backend=fake_backend) as orchestrator:
        yield orchestrator
