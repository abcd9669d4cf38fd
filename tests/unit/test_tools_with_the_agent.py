"""The editor, code execution and memory tools driven by the agent loop (local Messages API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from orchestrator import Config, Orchestrator
from orchestrator.agent import run_agent
from orchestrator.testing.messages_api import MessagesAPIServer, Reply, ToolUseReply


@pytest.fixture
async def api_nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def test_one_turn_uses_all_three_tools(
    orch: Orchestrator, fake_config: Config, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    ws = fake_config.sandbox.workdir
    server = MessagesAPIServer(
        [
            Reply(
                text="Working.",
                tool_uses=[
                    ToolUseReply(
                        id="toolu_edit",
                        name="str_replace_based_edit_tool",
                        input={"command": "create", "path": f"{ws}/n.py", "file_text": "N = 3\n"},
                    ),
                    ToolUseReply(
                        id="toolu_code",
                        name="code_execution",
                        input={"code": f"exec(open({ws!r} + '/n.py').read())\nN * 14"},
                    ),
                    ToolUseReply(
                        id="toolu_memory",
                        name="memory",
                        input={"command": "create", "path": "/memories/n.md", "file_text": "N=3"},
                    ),
                ],
            ),
            Reply(text="Done."),
        ]
    )
    await api_nursery.start(server.serve)
    result = await run_agent(
        orch,
        "use the tools",
        api_key="k",
        base_url=server.url,
        run_root=tmp_path,
        tools=("text_editor", "code_execution", "memory"),
    )
    first, second = server.requests
    assert result.final_text == "Done."
    assert [tool["name"] for tool in first.body["tools"]] == [
        "str_replace_based_edit_tool",
        "code_execution",
        "memory",
    ]
    assert first.body["tools"][1]["input_schema"]["properties"]["code"]["type"] == "string"
    assert "context-management-2025-06-27" in first.betas
    edit, code, memory = second.body["messages"][-1]["content"]
    assert edit["content"][0]["text"] == f"File created successfully at: {ws}/n.py"
    assert code["content"][0]["text"] == "result: 42\nreturn_code: 0"
    assert memory["content"][0]["text"] == "File created successfully at: /memories/n.md"
    assert not any(r.get("is_error") for r in (edit, code, memory))
