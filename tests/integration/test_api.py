"""The HTTP API as a real server process over the real engine, driven by httpx under trio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
import trio

from orchestrator.testing.api_process import ApiProcess, start_api_process

from .conftest import IMAGE

TOKEN = "integration-token"


def client_for(server: ApiProcess, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}, **kw
    )


@pytest.fixture(scope="module")
def server() -> Iterator[ApiProcess]:
    running = start_api_process({"SBX_TOKEN": TOKEN})
    yield running
    running.stop()


async def new_session(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/sessions", json={"image": IMAGE})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_twenty_concurrent_exec_streams_keep_their_order(server: ApiProcess) -> None:
    async with client_for(server) as client:
        sessions = [await new_session(client) for _ in range(4)]
        seen: dict[int, list[str]] = {}

        async def stream(i: int) -> None:
            sid = sessions[i % len(sessions)]
            lines: list[str] = []
            async with client.stream(
                "POST",
                f"/v1/sessions/{sid}/exec",
                json={"command": f"for n in $(seq 1 50); do echo {i}-$n; done"},
                headers={"Accept": "application/x-ndjson"},
            ) as response:
                async for raw in response.aiter_lines():
                    event = json.loads(raw)
                    if event["type"] == "stdout":
                        lines.extend(event["data"].splitlines())
                    elif event["type"] == "result":
                        assert event["exit_code"] == 0
            seen[i] = lines

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(stream, i)
        for sid in sessions:
            await client.delete(f"/v1/sessions/{sid}")
    assert seen == {i: [f"{i}-{n}" for n in range(1, 51)] for i in range(20)}


async def test_a_disconnecting_client_cancels_the_command_in_the_sandbox(
    server: ApiProcess,
) -> None:
    async with client_for(server) as client:
        sid = await new_session(client)
        async with client.stream(
            "POST",
            f"/v1/sessions/{sid}/exec",
            json={"command": "echo started; exec sleep 777"},
            headers={"Accept": "text/event-stream"},
        ) as response:
            async for raw in response.aiter_lines():
                if raw.startswith("data:"):
                    assert json.loads(raw[5:])["data"] == "started\n"
                    break
        with trio.fail_after(15):
            while True:
                ps = await client.post(
                    f"/v1/sessions/{sid}/exec",
                    json={"command": "ps -eo args= | grep -c '^sleep 777'"},
                )
                if ps.json()["stdout"].strip() == "0":
                    break
                await trio.sleep(0.2)
        await client.delete(f"/v1/sessions/{sid}")


async def test_a_slow_reader_keeps_server_memory_bounded(server: ApiProcess) -> None:
    """64 MiB of output (the most one call may keep) against a reader that stops for
    seconds: the server holds the producer back (or drops with a marker) instead of
    buffering what it cannot send."""
    total = 64 << 20
    async with client_for(server) as client:
        sid = await new_session(client)
        baseline = server.rss()
        peak = baseline
        received = 0
        events: list[str] = []

        async def sample(cancel: trio.CancelScope) -> None:
            nonlocal peak
            with cancel:
                while True:
                    peak = max(peak, server.rss())
                    await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            sampler = trio.CancelScope()
            nursery.start_soon(sample, sampler)
            async with client.stream(
                "POST",
                f"/v1/sessions/{sid}/exec",
                json={
                    "command": f"head -c {total} /dev/zero | tr '\\0' x",
                    "timeout": 300,
                    "max_output": total,
                },
                headers={"Accept": "application/x-ndjson"},
            ) as response:
                lines = response.aiter_lines()
                first = json.loads(await lines.__anext__())
                received += len(first.get("data", ""))
                await trio.sleep(4)  # the reader stops; the command could produce it all meanwhile
                async for raw in lines:
                    event = json.loads(raw)
                    events.append(event["type"])
                    if event["type"] == "stdout":
                        received += len(event["data"])
            sampler.cancel()
        await client.delete(f"/v1/sessions/{sid}")
    assert events[-1] == "result"
    assert received == total or "dropped" in events  # all of it, or the loss announced
    assert peak - baseline < 32 << 20, f"server RSS grew by {(peak - baseline) >> 20} MiB"


async def test_graceful_shutdown_leaves_no_container(docker_client: docker.DockerClient) -> None:
    own = start_api_process({"SBX_TOKEN": TOKEN})
    try:
        async with client_for(own) as client:
            ids = [await new_session(client) for _ in range(2)]
    finally:
        code = own.stop()
    assert code == 0
    for sid in ids:
        assert (
            docker_client.containers.list(all=True, filters={"label": f"io.sbx.session={sid}"})
            == []
        )


async def test_desktop_screenshot_and_live_view_over_the_api(server: ApiProcess) -> None:
    async with client_for(server) as client:
        created = await client.post("/v1/sessions", json={"image": "desktop"})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        shot = await client.get(f"/v1/sessions/{sid}/screenshot")
        view = await client.post(f"/v1/sessions/{sid}/view")
        url = view.json()["url"]
        async with httpx.AsyncClient() as browser:  # the page needs no bearer token
            page = await browser.get(url)
            forged = await browser.get(url.replace(url.rstrip("/").rsplit("/", 1)[1], "x" * 22))
        await client.delete(f"/v1/sessions/{sid}")
    assert shot.headers["content-type"] == "image/png"
    assert shot.content.startswith(b"\x89PNG")
    assert url.startswith(server.url.replace("0.0.0.0", "127.0.0.1") + "/desktop/")
    assert page.status_code == 200
    assert "view only" in page.text
    assert forged.status_code in {403, 404}
