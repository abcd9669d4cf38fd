"""The MCP server over streamable HTTP, served in-process over the fake backend, with the
``mcp`` SDK's own client: tools, errors as ``isError`` results, tokens, session ownership,
and sandboxes that go with the MCP session."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from orchestrator import Config, FakeBackend, Orchestrator, SessionNotFound
from orchestrator.mcp_server import ClientSandboxes
from orchestrator.mcp_server.calls import tool_result_to_mcp
from orchestrator.mcp_server.catalog import CLAUDE_TOOLS, tool_catalog
from orchestrator.tools.registry import default_registry
from tests.api_harness import ALICE, BOB, Api, live, running_api

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}


@pytest.fixture
async def mcp_api(api_config: Config, fake_backend: FakeBackend) -> AsyncIterator[Api]:
    async with running_api(api_config, fake_backend, mcp=True) as running:
        yield running


@asynccontextmanager
async def mcp_client(
    api: Api, token: str = ALICE, *, terminate_on_close: bool = True
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(
            f"{api.url}/mcp", http_client=http, terminate_on_close=terminate_on_close
        )
        async with Client(transport) as client:
            yield client


def text_of(result: object) -> str:
    return "\n".join(getattr(part, "text", "") for part in getattr(result, "content", []))


async def wait_until_no_sandbox(backend: FakeBackend, deadline: float) -> None:
    with trio.move_on_after(deadline):
        while live(backend):
            await trio.sleep(0.02)
    assert live(backend) == []


def test_the_catalog_lists_sandbox_tools_and_claudes_tools_each_with_an_object_schema(
    fake_config: Config,
) -> None:
    tools = {tool.name: tool for tool in tool_catalog(default_registry(fake_config))}
    assert {"sandbox_create", "sandbox_list", "sandbox_close", "exec", "read_file"} <= set(tools)
    assert {"write_file", *CLAUDE_TOOLS} <= set(tools)
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.description
    for name in CLAUDE_TOOLS:
        assert "sandbox_id" in tools[name].input_schema["properties"]
    assert tools["exec"].input_schema["required"] == ["command"]


def test_a_tool_result_keeps_its_images_as_images_and_its_errors_as_errors() -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    ok = tool_result_to_mcp(
        {"content": [{"type": "text", "text": "done"}, {"type": "image", "source": image}]}
    )
    assert [part.type for part in ok.content] == ["text", "image"]
    assert ok.content[1].mime_type == "image/png"  # type: ignore[union-attr]
    failed = tool_result_to_mcp({"content": "no such file", "is_error": True})
    assert failed.is_error
    assert text_of(failed) == "no such file"


async def test_exec_files_and_bash_run_in_the_sandbox_the_client_created(
    mcp_api: Api,
) -> None:
    async with mcp_client(mcp_api) as client:
        assert client.protocol_version == "2025-11-25"  # the handshake era: a session
        created = await client.call_tool("sandbox_create", {})
        assert not created.is_error, text_of(created)
        sandbox_id = created.structured_content["sandbox_id"]
        assert live(mcp_api.backend)

        ran = await client.call_tool("exec", {"command": "echo hello; exit 3"})
        assert not ran.is_error
        assert ran.structured_content["exit_code"] == 3
        assert ran.structured_content["stdout"] == "hello\n"

        workdir = mcp_api.config.sandbox.workdir
        path = f"{workdir}/notes.txt"
        wrote = await client.call_tool(
            "write_file", {"path": path, "content": "line\n", "sandbox_id": sandbox_id}
        )
        assert not wrote.is_error, text_of(wrote)
        read = await client.call_tool("read_file", {"path": path})
        assert text_of(read) == "line\n"
        raw = await client.call_tool("read_file", {"path": path, "encoding": "base64"})
        assert base64.b64decode(text_of(raw)) == b"line\n"

        shell = await client.call_tool("bash", {"command": f"cd {workdir} && ls"})
        assert "notes.txt" in text_of(shell)

        listed = await client.call_tool("sandbox_list", {})
        assert [s["sandbox_id"] for s in listed.structured_content["sandboxes"]] == [sandbox_id]
    # Leaving the client deletes its MCP session: its sandbox goes with it.
    await wait_until_no_sandbox(mcp_api.backend, 5)


async def test_bad_calls_are_is_error_results_that_name_the_fix(mcp_api: Api) -> None:
    async with mcp_client(mcp_api) as client:
        early = await client.call_tool("exec", {"command": "true"})
        assert early.is_error
        assert "sandbox_create" in text_of(early)

        unknown = await client.call_tool("teleport", {})
        assert unknown.is_error
        assert "unknown tool 'teleport'" in text_of(unknown)

        await client.call_tool("sandbox_create", {})
        bad = await client.call_tool("exec", {"command": "true", "colour": "red"})
        assert bad.is_error
        assert "colour" in text_of(bad)

        elsewhere = await client.call_tool("exec", {"command": "true", "sandbox_id": "nope"})
        assert elsewhere.is_error
        assert "sandbox_list" in text_of(elsewhere)

        path = f"{mcp_api.config.sandbox.workdir}/binary"
        blob = base64.b64encode(b"\xff\xfe\x00").decode()
        await client.call_tool("write_file", {"path": path, "content": blob, "encoding": "base64"})
        binary = await client.call_tool("read_file", {"path": path})
        assert binary.is_error
        assert "encoding='base64'" in text_of(binary)

        missing = await client.call_tool("read_file", {"path": "/nowhere/at/all"})
        assert missing.is_error

        option = await client.call_tool("sandbox_create", {"privileged": True})
        assert option.is_error
        assert "privileged" in text_of(option)


async def test_a_client_gone_mid_call_leaves_no_sandbox(mcp_api: Api) -> None:
    """No DELETE: the client's connection drops while its call runs, as when it is killed."""
    started = trio.Event()
    async with trio.open_nursery() as nursery:

        async def vanishing_client() -> None:
            async with mcp_client(mcp_api, terminate_on_close=False) as client:
                await client.call_tool("sandbox_create", {})
                started.set()
                await client.call_tool("exec", {"command": "sleep 60"})

        nursery.start_soon(vanishing_client)
        await started.wait()
        await trio.sleep(0.3)  # the exec is under way
        assert live(mcp_api.backend)
        nursery.cancel_scope.cancel()
    await wait_until_no_sandbox(mcp_api.backend, 2)


async def test_mcp_needs_a_token_and_a_session_answers_only_its_owner(mcp_api: Api) -> None:
    async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30) as http:
        anonymous = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "missing bearer token" in anonymous.json()["error"]["message"]
        wrong = await http.post(
            "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert "invalid bearer token" in wrong.json()["error"]["message"]

        alice = {**MCP_HEADERS, "authorization": f"Bearer {ALICE}"}
        opened = await http.post("/mcp", json=INITIALIZE, headers=alice)
        assert opened.status_code == 200
        session_id = opened.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        bob = {**MCP_HEADERS, "authorization": f"Bearer {BOB}", "mcp-session-id": session_id}
        stolen = await http.post("/mcp", json=listing, headers=bob)
        assert stolen.status_code == 404
        assert "Session not found" in stolen.json()["error"]["message"]
        deleted = await http.delete("/mcp", headers={**alice, "mcp-session-id": session_id})
        assert deleted.status_code == 200


async def test_the_stateless_protocol_is_refused_naming_the_versions_served(mcp_api: Api) -> None:
    headers = {
        **MCP_HEADERS,
        "authorization": f"Bearer {ALICE}",
        "mcp-protocol-version": "2026-07-28",
    }
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover"}
    async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30) as http:
        refused = await http.post("/mcp", json=discover, headers=headers)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == -32022
    assert "2025-11-25" in error["data"]["supported"]


async def test_without_the_mcp_flag_there_is_no_mcp_endpoint(api: Api) -> None:
    async with api.client() as http:
        response = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 404


async def test_the_stdio_wire_splits_lines_and_ends_at_eof_or_an_oversized_message() -> None:
    from orchestrator.mcp_server.server import _WireLines

    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    wire = _WireLines(read_in, write_out, max_line=64)
    os.write(write_in, b'{"a": 1}\n{"b":')
    os.write(write_in, b" 2}\n" + b"x" * 100)
    lines = []
    async for line in wire:
        lines.append(line)
    assert lines == ['{"a": 1}\n', '{"b": 2}\n']  # the 100 bytes with no end: refused
    assert wire.ended.is_set()
    await wire.write("reply\n")
    assert os.read(read_out, 100) == b"reply\n"
    await wire.aclose()
    os.close(write_in)
    os.close(read_out)


async def test_a_clients_sandboxes_are_named_by_id_and_all_go_together(
    orch: Orchestrator, fake_backend: FakeBackend
) -> None:
    sandboxes = ClientSandboxes(orch, owner=None, client="test")
    with pytest.raises(SessionNotFound, match="sandbox_create"):
        sandboxes.get(None)
    first = await sandboxes.create({})
    assert sandboxes.get(None) is first
    second = await sandboxes.create({})
    with pytest.raises(SessionNotFound, match="pass sandbox_id"):
        sandboxes.get(None)
    assert sandboxes.get(second.id) is second
    assert {s.id for s in sandboxes.live()} == {first.id, second.id}
    async with trio.open_nursery() as nursery:  # two teardowns at once: both wait for it
        nursery.start_soon(sandboxes.close_all, "test")
        nursery.start_soon(sandboxes.close_all, "test")
    assert live(fake_backend) == []
    assert first.closed and second.closed
    with pytest.raises(SessionNotFound, match="ending"):
        await sandboxes.create({})


async def test_an_idle_mcp_session_ends_with_its_sandboxes(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    api_config.api.mcp_idle_timeout = 0.5
    async with running_api(api_config, fake_backend, mcp=True) as api:
        alice = {**MCP_HEADERS, "authorization": f"Bearer {ALICE}"}
        async with httpx.AsyncClient(base_url=api.url, timeout=30, headers=alice) as http:
            opened = await http.post("/mcp", json=INITIALIZE)
            in_session = {"mcp-session-id": opened.headers["mcp-session-id"]}
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post("/mcp", json=initialized, headers=in_session)).is_success
            create = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "sandbox_create", "arguments": {}},
            }
            created = await http.post("/mcp", json=create, headers=in_session)
            assert '"isError":false' in created.text
            assert live(fake_backend)
            await wait_until_no_sandbox(fake_backend, 5)  # no request for 0.5 s: it ends
            later = await http.post("/mcp", json=create, headers=in_session)
            assert later.status_code == 404
