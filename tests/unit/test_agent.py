"""The agent loop against the local Messages API server, with the real anthropic SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from orchestrator import Orchestrator
from orchestrator.agent import AgentError, run_agent
from orchestrator.testing.messages_api import (
    APIErrorReply,
    MessagesAPIServer,
    Reply,
    ToolUseReply,
)
from tests.api_harness import live


@pytest.fixture
async def api_nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def start(nursery: trio.Nursery, replies: list[Any], **kw: Any) -> MessagesAPIServer:
    server = MessagesAPIServer(replies, **kw)
    await nursery.start(server.serve)
    return server


def transcript(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "transcript.jsonl").read_text().splitlines()]


async def test_a_full_run_with_parallel_calls_and_a_retried_529(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start(
        api_nursery,
        [
            Reply(error=APIErrorReply(status=529)),
            Reply(
                text="Let me look.",
                tool_uses=[
                    ToolUseReply(id="toolu_a", name="bash", input={"command": "echo one"}),
                    ToolUseReply(id="toolu_b", name="bash", input={"command": "echo two >&2"}),
                    ToolUseReply(id="toolu_c", name="nope", input={}),
                ],
            ),
            Reply(text="All done."),
        ],
    )
    streamed: list[str] = []
    result = await run_agent(
        orch,
        "say things",
        api_key="test-key",
        base_url=server.url,
        run_root=tmp_path,
        on_text=streamed.append,
    )
    assert result.stop_reason == "end_turn"
    assert result.turns == 2
    assert result.final_text == "All done."
    assert "".join(streamed) == "Let me look.\nAll done.\n"

    first, retried, second = server.requests
    assert first.body == retried.body  # the SDK retried the 529 as is
    assert first.body["tools"] == [
        {"type": "bash_20250124", "name": "bash", "cache_control": {"type": "ephemeral"}}
    ]
    assert first.betas == ["computer-use-2025-11-24"]
    assert first.body["model"] == "claude-sonnet-4-6"
    assert first.api_key == "test-key"
    assert first.body["stream"] is True
    results = second.body["messages"][-1]["content"]
    assert [r["tool_use_id"] for r in results] == ["toolu_a", "toolu_b", "toolu_c"]
    assert results[0]["content"] == [{"type": "text", "text": "one"}]
    assert results[1]["content"] == [{"type": "text", "text": "two"}]
    assert results[2]["is_error"] is True
    assert second.body["messages"][1]["content"][0] == {"type": "text", "text": "Let me look."}

    kinds = [entry["type"] for entry in transcript(result.run_dir)]
    assert kinds[:2] == ["start", "session"]
    assert kinds.count("tool_call") == 3
    assert kinds[-1] == "end"


async def test_a_command_with_no_output_is_a_valid_tool_result(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    """`cd /tmp` prints nothing; the API refuses empty text blocks, as the stand-in does."""
    server = await start(
        api_nursery,
        [
            Reply(tool_uses=[ToolUseReply(id="toolu_q", name="bash", input={"command": "cd /"})]),
            Reply(text="Moved."),
        ],
    )
    result = await run_agent(
        orch, "move", api_key="k", base_url=server.url, run_root=tmp_path, on_text=None
    )
    assert result.stop_reason == "end_turn", result
    content = server.requests[-1].body["messages"][-1]["content"][0]["content"]
    assert content == [{"type": "text", "text": "(no output)"}]


async def test_the_stand_in_refuses_empty_text_blocks_like_the_api(
    api_nursery: trio.Nursery,
) -> None:
    import anthropic

    server = await start(api_nursery, [Reply(text="never")])
    client = anthropic.AsyncAnthropic(api_key="k", base_url=server.url, max_retries=0)
    tool_result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [{"type": "text", "text": ""}],
    }
    with pytest.raises(anthropic.BadRequestError, match="must be non-empty"):
        await client.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": [tool_result]}]
        )


async def test_missing_api_key_fails_before_any_sandbox(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch, fake_backend, tmp_path: Path
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AgentError, match="ANTHROPIC_API_KEY is not set"):
        await run_agent(orch, "x", run_root=tmp_path)
    assert fake_backend.sandboxes == {}


async def test_api_error_names_status_and_request_id_and_keeps_the_run(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start(
        api_nursery,
        [
            Reply(
                error=APIErrorReply(
                    status=400,
                    type="invalid_request_error",
                    message="max_tokens is too large",
                    retry_after_ms=None,
                )
            ),
        ],
    )
    with pytest.raises(AgentError) as info:
        await run_agent(orch, "x", api_key="k", base_url=server.url, run_root=tmp_path)
    message = str(info.value)
    assert "400 (invalid_request_error)" in message
    assert "max_tokens is too large" in message
    assert "request id req_" in message
    assert info.value.run_dir is not None
    entries = transcript(info.value.run_dir)
    assert entries[-2]["type"] == "error"
    assert entries[-1]["type"] == "end"


async def test_unreachable_api_is_a_clear_error(orch: Orchestrator, tmp_path: Path) -> None:
    import anthropic

    from orchestrator.agent.calls import MessagesCaller  # noqa: F401 - the path under test

    client = anthropic.AsyncAnthropic(api_key="k", base_url="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(AgentError, match="cannot reach the Claude API"):
        await run_agent(orch, "x", client=client, run_root=tmp_path)


async def test_max_turns_and_token_budget_stop_the_loop(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    looping = [
        Reply(
            tool_uses=[ToolUseReply(name="bash", input={"command": "true"})],
            input_tokens=600,
            output_tokens=100,
        )
        for _ in range(5)
    ]
    server = await start(api_nursery, looping)
    result = await run_agent(
        orch, "x", api_key="k", base_url=server.url, run_root=tmp_path, max_turns=2
    )
    assert (result.stop_reason, result.turns) == ("max_turns", 2)
    result = await run_agent(
        orch, "x", api_key="k", base_url=server.url, run_root=tmp_path, token_budget=1000
    )
    assert result.stop_reason == "token_budget"
    assert result.input_tokens + result.output_tokens == 1400
    assert server.remaining == 1  # 2 + 2 of the 5 replies used


async def test_models_get_their_own_tool_versions(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start(api_nursery, [Reply(text="hi"), Reply(text="hi")])
    await run_agent(
        orch,
        "x",
        api_key="k",
        base_url=server.url,
        run_root=tmp_path,
        model="claude-3-5-sonnet-20241022",
    )
    await run_agent(
        orch, "x", api_key="k", base_url=server.url, run_root=tmp_path, model="claude-opus-4-5"
    )
    old, new = server.requests
    assert [{**t, "cache_control": None} for t in old.body["tools"]] == [
        {"type": "bash_20241022", "name": "bash", "cache_control": None}
    ]
    assert old.betas == ["computer-use-2024-10-22"]
    assert [{**t, "cache_control": None} for t in new.body["tools"]] == [
        {"type": "bash_20250124", "name": "bash", "cache_control": None}
    ]
    assert new.betas == ["computer-use-2025-11-24"]  # bash rides on its generation's flag


async def test_the_sdk_retries_as_often_as_agent_max_retries_says(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    overloaded = [Reply(error=APIErrorReply(status=529, retry_after_ms=20)) for _ in range(5)]
    server = await start(api_nursery, [*overloaded, Reply(text="Made it.")])
    orch.config.agent.max_retries = 6
    result = await run_agent(orch, "x", api_key="k", base_url=server.url, run_root=tmp_path)
    assert result.final_text == "Made it."
    assert len(server.requests) == 6  # five 529s, each retried by the SDK, then the answer
    assert orch.resilience.breaker("messages_api").state.value == "closed"
    # Each retry the SDK made is counted as sbx's own are (sbx_retries_total).
    assert orch.resilience.retries[("messages_api", "http_529")] == 5


async def test_too_few_retries_fail_with_an_error_naming_them(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    overloaded = [Reply(error=APIErrorReply(status=529, retry_after_ms=20)) for _ in range(5)]
    server = await start(api_nursery, [*overloaded, Reply(text="Made it.")])
    orch.config.agent.max_retries = 2
    with pytest.raises(AgentError) as caught:
        await run_agent(orch, "x", api_key="k", base_url=server.url, run_root=tmp_path)
    assert "529 (overloaded_error) after 2 retries (agent.max_retries)" in str(caught.value)
    assert caught.value.retryable
    assert len(server.requests) == 3
    assert orch.resilience.retries[("messages_api", "http_529")] == 2


async def test_a_messages_api_in_trouble_opens_its_breaker_and_runs_fail_fast(
    orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path, fake_backend: Any
) -> None:
    from orchestrator.errors import DependencyDown

    server = await start(
        api_nursery, [Reply(error=APIErrorReply(status=500, type="api_error")) for _ in range(9)]
    )
    orch.config.agent.max_retries = 0
    breaker = orch.resilience.breaker("messages_api")
    breaker.failures = 2
    for _ in range(2):
        with pytest.raises(AgentError, match="500"):
            await run_agent(orch, "x", api_key="k", base_url=server.url, run_root=tmp_path)
    asked = len(server.requests)
    with pytest.raises(DependencyDown) as caught:
        await run_agent(orch, "x", api_key="k", base_url=server.url, run_root=tmp_path)
    assert caught.value.breaker == "messages_api"
    assert len(server.requests) == asked  # failed fast: the API was not asked
    assert len(fake_backend.sandboxes) == 2  # ... and no sandbox was started for it
    assert live(fake_backend) == []
