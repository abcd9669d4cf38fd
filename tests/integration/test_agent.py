"""The agent loop end to end: real SDK, local Messages API server, real sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import trio

from orchestrator import Orchestrator
from orchestrator.agent import AgentError, run_agent
from orchestrator.testing.messages_api import APIErrorReply, MessagesAPIServer, Reply, ToolUseReply

from .conftest import IMAGE


async def test_agent_runs_parallel_tool_calls_in_a_real_sandbox(
    orch: Orchestrator, tmp_path: Path
) -> None:
    server = MessagesAPIServer(
        [
            Reply(
                text="Working on it.",
                tool_uses=[
                    ToolUseReply(id="toolu_1", name="bash", input={"command": "id -u"}),
                    ToolUseReply(
                        id="toolu_2",
                        name="bash",
                        input={"command": "python3 -c 'import numpy; print(numpy.eye(2).sum())'"},
                    ),
                    ToolUseReply(
                        id="toolu_3", name="bash", input={"command": "cat /etc/debian_version"}
                    ),
                ],
            ),
            Reply(error=APIErrorReply(status=529)),
            Reply(text="Done: not root, numpy works."),
        ]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        result = await run_agent(
            orch,
            "check the sandbox",
            image=IMAGE,
            api_key="k",
            base_url=server.url,
            run_root=tmp_path,
        )
        nursery.cancel_scope.cancel()
    assert result.stop_reason == "end_turn"
    assert result.final_text == "Done: not root, numpy works."
    assert len(server.requests) == 3  # the 529 was retried by the SDK
    tool_results = server.requests[1].body["messages"][-1]["content"]
    texts = [r["content"][0]["text"] for r in tool_results]
    assert texts[0] != "0"
    assert texts[1] == "2.0"
    assert texts[2][:2].isdigit()
    lines = [json.loads(x) for x in (result.run_dir / "transcript.jsonl").read_text().splitlines()]
    calls = [entry for entry in lines if entry["type"] == "tool_call"]
    assert [c["tool_use_id"] for c in sorted(calls, key=lambda c: c["tool_use_id"])] == [
        "toolu_1",
        "toolu_2",
        "toolu_3",
    ]
    assert all(c["seconds"] > 0 for c in calls)


@pytest.mark.parametrize(("max_retries", "succeeds"), [(6, True), (2, False)])
async def test_five_529s_are_outlasted_by_six_retries_and_named_with_two(
    orch: Orchestrator,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    max_retries: int,
    succeeds: bool,
) -> None:
    """The SDK's own retries, as many as ``agent.max_retries`` says, counted as sbx's are;
    too few end the run with an error naming them -- on time, with nothing left behind."""
    overloaded = [Reply(error=APIErrorReply(status=529, retry_after_ms=50)) for _ in range(5)]
    server = MessagesAPIServer(
        [
            Reply(
                text="Looking.",
                tool_uses=[ToolUseReply(id="toolu_1", name="bash", input={"command": "echo hi"})],
            ),
            *overloaded,
            Reply(text="Made it."),
        ]
    )
    orch.config.agent.max_retries = max_retries
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            result = await run_agent(
                orch, "say hi", image=IMAGE, api_key="k", base_url=server.url, run_root=tmp_path
            )
            failure = None
        except AgentError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    assert trio.current_time() - started < 60
    if succeeds:
        assert failure is None and result.final_text == "Made it."
        assert len(server.requests) == 7  # the tool turn, five 529s, the answer
        assert orch.resilience.retries[("messages_api", "http_529")] == 5
    else:
        assert failure is not None
        assert "529 (overloaded_error) after 2 retries (agent.max_retries)" in str(failure)
        assert failure.retryable
        assert len(server.requests) == 4  # the tool turn, then the first try and two retries
        assert orch.resilience.retries[("messages_api", "http_529")] == 2
    left = docker_client.api.containers(
        all=True, filters={"label": f"io.sbx.supervisor={orch.supervisor.identity}"}
    )
    assert left == []
