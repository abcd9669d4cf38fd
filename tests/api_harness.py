"""The HTTP API served in-process over the fake backend, for the API's unit tests.

``tests/unit/conftest.py`` makes the ``api_config`` and ``api`` fixtures of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from orchestrator import Config, FakeBackend
from orchestrator.api.auth import hash_token
from orchestrator.api.server import serve_api
from orchestrator.config import ApiToken

__all__ = [
    "ADMIN",
    "ALICE",
    "BOB",
    "Api",
    "api_test_config",
    "live",
    "new_session",
    "running_api",
]

ALICE, BOB, ADMIN = "alice-token", "bob-token", "admin-token"


@dataclass
class Api:
    url: str
    backend: FakeBackend
    config: Config
    shutdown: trio.Event

    def client(self, token: str | None = ALICE, **kw: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kw)


def api_test_config(fake_config: Config, tmp_path: Path) -> Config:
    """``fake_config`` with three tokens (alice, bob, and ops an admin) and runs in ``tmp_path``."""
    fake_config.api.tokens = [
        ApiToken(owner="alice", sha256=hash_token(ALICE)),
        ApiToken(owner="bob", sha256=hash_token(BOB)),
        ApiToken(owner="ops", sha256=hash_token(ADMIN), admin=True),
    ]
    fake_config.api.runs_dir = tmp_path / "runs"
    fake_config.api.graceful_timeout = 3
    return fake_config


@asynccontextmanager
async def running_api(
    config: Config, backend: FakeBackend, *, mcp: bool = False
) -> AsyncIterator[Api]:
    """The API served in-process on a free port (``mcp``: with ``/mcp``), shut down when the
    block ends."""
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            partial(
                serve_api,
                config,
                bind="127.0.0.1:0",
                backend=backend,
                shutdown=shutdown,
                handle_signals=False,
                mcp=mcp,
            )
        )
        yield Api(url, backend, config, shutdown)
        shutdown.set()


def live(backend: FakeBackend) -> list[str]:
    return [i for i, box in backend.sandboxes.items() if not backend._gone(box)]


async def new_session(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
