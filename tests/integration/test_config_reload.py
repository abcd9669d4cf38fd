"""Live reload of a real ``sbx serve`` on SIGHUP, while calls run in real sandboxes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from orchestrator.testing.api_process import ApiProcess, start_api_process

from .conftest import IMAGE

TOKEN = "reload-token"


def _config(max_sessions: int, max_memory: str = "16g") -> str:
    return (
        "[api]\nconfig_watch_interval = 0\n"
        f'[limits]\nmax_sessions_per_owner = {max_sessions}\nmax_memory = "{max_memory}"\n'
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sbx.toml"
    path.write_text(_config(2))
    return path


@pytest.fixture
def server(config_file: Path) -> Iterator[ApiProcess]:
    running = start_api_process({"SBX_TOKEN": TOKEN, "SBX_CONFIG": str(config_file)})
    try:
        yield running
    finally:
        running.stop()


async def _reload(server: ApiProcess, message: str) -> None:
    """SIGHUP, then wait for the log line that says how the reload ended."""
    seen = server.log().count(message)
    os.kill(server.pid, signal.SIGHUP)
    with trio.fail_after(30):
        while server.log().count(message) == seen:
            await trio.sleep(0.05)


async def test_sighup_changes_a_limit_while_calls_run_and_none_fails(
    server: ApiProcess, config_file: Path
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:

        async def open_session() -> httpx.Response:
            return await client.post("/v1/sessions", json={"image": IMAGE})

        first, second = await open_session(), await open_session()
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        sessions = [first.json()["id"], second.json()["id"]]
        assert (await open_session()).status_code == 429  # the ceiling: 2

        stop = trio.Event()

        async def keep_calling(session: str) -> None:
            while not stop.is_set():
                response = await client.post(
                    f"/v1/sessions/{session}/exec", json={"command": "echo hi"}
                )
                statuses.append(response.status_code)

        async with trio.open_nursery() as load:
            for session in sessions * 2:
                load.start_soon(keep_calling, session)
            with trio.fail_after(60):
                while len(statuses) < 10:
                    await trio.sleep(0.05)

            config_file.write_text(_config(3))
            before = len(statuses)
            await _reload(server, "configuration reloaded")
            third = await open_session()
            assert third.status_code == 201, third.text  # the new ceiling, in force
            sessions.append(third.json()["id"])

            # Rejected whole: the memory ceiling is under the default sandbox's needs, so
            # the ceiling of 1 session, fine on its own, is not applied either.
            config_file.write_text(_config(1, max_memory="32m"))
            await _reload(server, "configuration change rejected")
            closed = await client.delete(f"/v1/sessions/{sessions.pop()}")
            assert closed.status_code == 204
            again = await open_session()
            assert again.status_code == 201, again.text  # still 3, not 1
            sessions.append(again.json()["id"])

            with trio.fail_after(60):
                while len(statuses) < before + 10:
                    await trio.sleep(0.05)
            stop.set()

        for session in sessions:
            await client.delete(f"/v1/sessions/{session}")
    assert set(statuses) == {200}, statuses
    log = server.log()
    assert "limits.max_sessions_per_owner" in log
    assert "limits.max_memory" in log  # the rejection's reason names the ceiling
