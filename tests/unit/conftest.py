"""Fixtures of the API's unit tests: the API served in-process over the fake backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator import Config, FakeBackend
from tests.api_harness import Api, api_test_config, running_api


@pytest.fixture
def api_config(fake_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("SBX_TOKEN", raising=False)
    return api_test_config(fake_config, tmp_path)


@pytest.fixture
async def api(api_config: Config, fake_backend: FakeBackend) -> AsyncIterator[Api]:
    async with running_api(api_config, fake_backend) as running:
        yield running
