"""The MCP server against the real engine and images, driven by the ``mcp`` SDK's own client:
over stdio (``python -m orchestrator.cli mcp`` spawned by the client) and over streamable
HTTP (``sbx serve --mcp`` started here).  Sandboxes belong to the client's connection: a
client that disconnects mid-call leaves none behind two seconds later."""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import docker
import httpx
import httpx2
import pytest
import trio
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from orchestrator.testing.api_process import ApiProcess, start_api_process

from .conftest import IMAGE

TOKEN = "mcp-test-token"
GONE_WITHIN = 2.0
"""How soon after its client disconnects a sandbox must be gone (the server's promise)."""


def containers_of_session(client: docker.DockerClient, session_id: str) -> list[str]:
    """Sparse: no inspect per container, which fails on one being removed meanwhile."""
    labelled = {"label": f"io.sbx.session={session_id}"}
    return [c.id for c in client.containers.list(all=True, sparse=True, filters=labelled)]


def text_of(result: Any) -> str:
    return "\n".join(getattr(part, "text", "") for part in result.content)


def stdio_client() -> Client:
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "orchestrator.cli", "mcp"], env=dict(os.environ)
    )
    return Client(server)


@pytest.fixture(scope="module")
def server() -> Iterator[ApiProcess]:
    running = start_api_process({"SBX_TOKEN": TOKEN}, serve_args=("--mcp",))
    try:
        yield running
    finally:
        running.stop()


@asynccontextmanager
async def http_client(
    server: ApiProcess, *, terminate_on_close: bool = True
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(
            f"{server.url}/mcp", http_client=http, terminate_on_close=terminate_on_close
        )
        async with Client(transport) as client:
            yield client


async def assert_gone_within(
    docker_client: docker.DockerClient, session_id: str, seconds: float
) -> None:
    """The session's container is removed before ``seconds`` have passed."""
    with trio.move_on_after(seconds):
        while await trio.to_thread.run_sync(containers_of_session, docker_client, session_id):
            await trio.sleep(0.05)
    left = await trio.to_thread.run_sync(containers_of_session, docker_client, session_id)
    assert left == [], f"sandbox {session_id} still there {seconds} s after its client left"


async def exercise_sandbox_tools(client: Client) -> str:
    """Create a sandbox and use it through every plain tool, bash and the editor."""
    names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"sandbox_create", "sandbox_list", "sandbox_close", "exec", "read_file"} <= names
    assert {"write_file", "bash", "str_replace_based_edit_tool", "computer"} <= names
    assert "code_execution" in names

    created = await client.call_tool("sandbox_create", {"image": IMAGE})
    assert not created.is_error, text_of(created)
    sandbox_id: str = created.structured_content["sandbox_id"]

    ran = await client.call_tool("exec", {"command": ["sh", "-c", "id -un; echo oops >&2"]})
    assert ran.structured_content["exit_code"] == 0
    assert ran.structured_content["stdout"] == "sandbox\n"
    assert ran.structured_content["stderr"] == "oops\n"

    blob = bytes(range(256))
    wrote = await client.call_tool(
        "write_file",
        {"path": "/tmp/blob", "content": base64.b64encode(blob).decode(), "encoding": "base64"},
    )
    assert not wrote.is_error, text_of(wrote)
    read = await client.call_tool("read_file", {"path": "/tmp/blob", "encoding": "base64"})
    assert base64.b64decode(text_of(read)) == blob

    await client.call_tool("bash", {"command": "cd /tmp && export GREETING=hi"})
    shell = await client.call_tool("bash", {"command": "pwd; echo $GREETING"})
    assert text_of(shell).split() == ["/tmp", "hi"]

    editor = "str_replace_based_edit_tool"
    made = await client.call_tool(
        editor, {"command": "create", "path": "/tmp/a.py", "file_text": "x = 1\ny = 2\n"}
    )
    assert not made.is_error, text_of(made)
    replace = {"command": "str_replace", "path": "/tmp/a.py", "old_str": "y = 2", "new_str": "y=3"}
    edited = await client.call_tool(editor, replace)
    assert not edited.is_error, text_of(edited)
    viewed = await client.call_tool(editor, {"command": "view", "path": "/tmp/a.py"})
    assert "y=3" in text_of(viewed)
    twice = await client.call_tool(
        editor, {"command": "str_replace", "path": "/tmp/a.py", "old_str": "zzz", "new_str": ""}
    )
    assert twice.is_error  # no match: an error result the model can act on
    assert "zzz" in text_of(twice)
    return sandbox_id


async def test_stdio_client_runs_exec_files_bash_editor_and_code_with_figures(
    docker_client: docker.DockerClient,
) -> None:
    async with stdio_client() as client:
        sandbox_id = await exercise_sandbox_tools(client)
        assert await trio.to_thread.run_sync(containers_of_session, docker_client, sandbox_id)

        code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n6 * 7"
        figure = await client.call_tool("code_execution", {"code": code})
        assert not figure.is_error, text_of(figure)
        images = [part for part in figure.content if part.type == "image"]
        assert images, figure.content
        assert base64.b64decode(images[0].data).startswith(b"\x89PNG")
        assert "42" in text_of(figure)

        closed = await client.call_tool("sandbox_close", {"sandbox_id": sandbox_id})
        assert not closed.is_error, text_of(closed)
        await assert_gone_within(docker_client, sandbox_id, GONE_WITHIN)
        after = await client.call_tool("exec", {"command": "true", "sandbox_id": sandbox_id})
        assert after.is_error
        assert "sandbox_create" in text_of(after)


async def test_stdio_client_that_disconnects_mid_call_leaves_no_sandbox(
    docker_client: docker.DockerClient,
) -> None:
    sandbox_ids: list[str] = []
    async with trio.open_nursery() as nursery:

        async def client_that_leaves() -> None:
            async with stdio_client() as client:
                for _ in range(2):
                    created = await client.call_tool("sandbox_create", {"image": IMAGE})
                    sandbox_ids.append(created.structured_content["sandbox_id"])
                call = {"command": "touch /tmp/go; sleep 60", "sandbox_id": sandbox_ids[0]}
                nursery.start_soon(client.call_tool, "exec", call)
                probe = {"path": "/tmp/go", "sandbox_id": sandbox_ids[0]}
                with trio.fail_after(30):
                    while (await client.call_tool("read_file", probe)).is_error:
                        await trio.sleep(0.05)
                cancel.set()
                await trio.sleep_forever()

        cancel = trio.Event()
        nursery.start_soon(client_that_leaves)
        await cancel.wait()
        nursery.cancel_scope.cancel()  # the client goes away with its exec still running
    for sandbox_id in sandbox_ids:
        await assert_gone_within(docker_client, sandbox_id, GONE_WITHIN)


async def test_http_client_runs_the_tools_and_its_sandboxes_end_with_its_session(
    server: ApiProcess, docker_client: docker.DockerClient
) -> None:
    async with http_client(server) as client:
        assert client.protocol_version == "2025-11-25"
        sandbox_id = await exercise_sandbox_tools(client)
        listed = await client.call_tool("sandbox_list", {})
        assert [s["sandbox_id"] for s in listed.structured_content["sandboxes"]] == [sandbox_id]
    # Leaving deletes the MCP session (DELETE /mcp): the sandbox goes with it.
    await assert_gone_within(docker_client, sandbox_id, GONE_WITHIN)


async def test_http_client_that_disconnects_mid_call_leaves_no_sandbox(
    server: ApiProcess, docker_client: docker.DockerClient
) -> None:
    """No DELETE: the connection carrying the call drops, as when the client is killed."""
    sandbox_ids: list[str] = []
    started = trio.Event()
    async with trio.open_nursery() as nursery:

        async def client_that_vanishes() -> None:
            async with http_client(server, terminate_on_close=False) as client:
                created = await client.call_tool("sandbox_create", {"image": IMAGE})
                sandbox_ids.append(created.structured_content["sandbox_id"])
                nursery.start_soon(client.call_tool, "exec", {"command": "touch /tmp/go; sleep 60"})
                with trio.fail_after(30):
                    while (await client.call_tool("read_file", {"path": "/tmp/go"})).is_error:
                        await trio.sleep(0.05)
                started.set()
                await trio.sleep_forever()

        nursery.start_soon(client_that_vanishes)
        await started.wait()
        nursery.cancel_scope.cancel()
    await assert_gone_within(docker_client, sandbox_ids[0], GONE_WITHIN)


async def test_http_computer_screenshot_is_an_image_result(server: ApiProcess) -> None:
    async with http_client(server) as client:
        created = await client.call_tool("sandbox_create", {"image": "desktop"})
        assert not created.is_error, text_of(created)
        shot = await client.call_tool("computer", {"action": "screenshot"})
        assert not shot.is_error, text_of(shot)
        [image] = [part for part in shot.content if part.type == "image"]
        assert image.mime_type == "image/png"
        assert base64.b64decode(image.data).startswith(b"\x89PNG")
        wrong = await client.call_tool("computer", {"action": "fly"})
        assert wrong.is_error
        assert "fly" in text_of(wrong)


async def test_http_mcp_without_a_valid_token_is_401(server: ApiProcess) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    }
    accept = {"accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        missing = await http.post("/mcp", json=initialize, headers=accept)
        wrong = await http.post(
            "/mcp", json=initialize, headers={**accept, "authorization": "Bearer wrong"}
        )
    assert missing.status_code == 401
    assert "missing bearer token" in missing.json()["error"]["message"]
    assert wrong.status_code == 401
    assert "invalid bearer token" in wrong.json()["error"]["message"]
