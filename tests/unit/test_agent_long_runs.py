"""Long agent runs against the Messages API stand-in: a screenshot every turn, 200 turns.

The stand-in refuses a prompt over the budget (its window is set to it), a
broken tool_use/tool_result pair, more than four breakpoints and thinking
blocks lost or altered, exactly as the API does -- so a run that finishes has
sent only requests the API would take.  The screenshots come from a fake
``screen`` tool (a synthetic 1024x768 PNG per step) on the fake backend.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from orchestrator import Orchestrator
from orchestrator.agent import AgentError, resume_agent, run_agent
from orchestrator.config import AgentConfig
from orchestrator.testing.api_rules import refusal
from orchestrator.testing.api_tokens import count_request
from orchestrator.testing.messages_api import (
    MessagesAPIServer,
    RecordedRequest,
    Reply,
    ToolUseReply,
)
from orchestrator.testing.screens import ScreenTool, screenshot_script

BUDGET = 8000
KEEP = 3


@pytest.fixture
async def api_nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


@pytest.fixture
def screen_orch(orch: Orchestrator) -> Orchestrator:
    orch.router.registry.register(ScreenTool())
    return orch


async def serve(nursery: trio.Nursery, replies: list[Any]) -> MessagesAPIServer:
    server = MessagesAPIServer(replies, max_input_tokens=BUDGET)
    await nursery.start(server.serve)
    return server


def settings(**overrides: Any) -> AgentConfig:
    return AgentConfig(context_budget=BUDGET, keep_images=KEEP, image_trim_step=2, **overrides)


def transcript(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "transcript.jsonl").read_text().splitlines()]


def images_in(request: RecordedRequest) -> int:
    found = 0
    for message in request.body["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            parts = block.get("content") if block.get("type") == "tool_result" else None
            for part in [block, *(parts if isinstance(parts, list) else [])]:
                found += part.get("type") == "image"
    return found


def unmarked(value: Any) -> Any:
    """``value`` without its cache_control markers."""
    if isinstance(value, dict):
        return {k: unmarked(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [unmarked(v) for v in value]
    return value


def marked(request: RecordedRequest) -> list[str]:
    """Where the request's breakpoints are: tools.N, system.N, messages.I."""
    body = request.body
    where = [f"tools.{i}" for i, t in enumerate(body.get("tools") or []) if "cache_control" in t]
    system = body.get("system")
    where += [f"system.{i}" for i, b in enumerate(system or []) if "cache_control" in b]
    for i, message in enumerate(body["messages"]):
        if "cache_control" in json.dumps(message["content"]):
            where.append(f"messages.{i}")
    return where


async def test_a_200_turn_screenshot_run_stays_under_its_budget_with_few_images(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await serve(api_nursery, screenshot_script(200))
    result = await run_agent(
        screen_orch,
        "check the screen 200 times",
        tools=("screen",),
        api_key="k",
        base_url=server.url,
        run_root=tmp_path,
        max_turns=250,
        context=settings(),
    )
    assert (result.stop_reason, result.turns) == ("end_turn", 201)
    assert result.final_text.startswith("Done: 200 steps")
    assert result.compactions >= 2

    turns = [r for r in server.messages_requests if r.body.get("tool_choice") is None]
    summaries = [r for r in server.messages_requests if r.body.get("tool_choice")]
    assert len(turns) == 201
    assert len(summaries) == result.compactions
    for request in server.messages_requests:
        assert count_request(request.body) <= BUDGET  # every request under the budget
        assert refusal(request.body, request.betas) is None  # tool pairs valid throughout
        assert images_in(request) <= KEEP
    carried = [images_in(r) for r in turns[3:]]
    assert set(carried) == {KEEP - 1, KEEP}  # replaced two at a time

    # Breakpoints: the last tool, the system prompt, the end of what no longer changes
    # (before the oldest image carried) and the newest message.
    for request in turns[5:]:
        messages = request.body["messages"]
        oldest = next(i for i, m in enumerate(messages) if '"image"' in json.dumps(m))
        assert marked(request) == [
            "tools.0",
            "system.0",
            f"messages.{oldest - 1}",
            f"messages.{len(messages) - 1}",
        ]
    for request in summaries:
        assert len(marked(request)) <= 4
        assert request.body["messages"][-1]["content"][-1]["text"].startswith(
            "The conversation so far is about to be replaced by a summary"
        )

    # The cache serves most of every prompt: reads on nearly every turn, and far more
    # tokens read than written.
    reads = [r.usage["cache_read_input_tokens"] for r in turns]
    assert sum(1 for n in reads if n) >= 150
    assert result.cache_read_tokens > 1.5 * result.cache_write_tokens
    assert sum(r.usage["input_tokens"] for r in turns) < 2000  # uncached input is tiny

    events = transcript(result.run_dir)
    compactions = [e for e in events if e["type"] == "compaction"]
    assert len(compactions) == result.compactions
    assert all(e["summary"].startswith("Summary of") for e in compactions)
    replaced = [e["images_replaced"] for e in events if e["type"] == "request"]
    steps = {b - a for a, b in itertools.pairwise(replaced) if b > a}
    assert steps == {2}  # images are replaced in steps, never one a turn
    counts = [e for e in events if e["type"] == "count_tokens"]
    assert counts and len(counts) < 150  # counted near the budget only
    usage = [e["usage"] for e in events if e["type"] == "assistant"]
    assert all(
        set(u) >= {"input_tokens", "output_tokens", "cache_read_input_tokens"} for u in usage
    )
    end = events[-1]
    assert end["type"] == "end" and end["compactions"] == result.compactions
    assert end["cost_usd"] == result.cost_usd and result.cost_usd > 0


async def test_resume_continues_a_stopped_200_turn_run_from_the_right_turn(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    script = screenshot_script(200)
    first = await serve(api_nursery, script[:120])
    stopped = await run_agent(
        screen_orch,
        "check the screen 200 times",
        tools=("screen",),
        api_key="k",
        base_url=first.url,
        run_root=tmp_path,
        max_turns=120,
        context=settings(),
    )
    assert (stopped.stop_reason, stopped.turns) == ("max_turns", 120)
    assert stopped.compactions >= 1
    last_before = first.messages_requests[-1].body["messages"]

    second = await serve(api_nursery, script[120:])
    resumed = await resume_agent(
        screen_orch,
        stopped.run_dir,
        api_key="k",
        base_url=second.url,
        max_turns=100,
        context=settings(),
    )
    assert (resumed.stop_reason, resumed.turns) == ("end_turn", 201)
    assert resumed.run_dir == stopped.run_dir
    assert second.remaining == 0  # turns 121..200 and the answer, none twice

    opening = second.messages_requests[0].body["messages"]
    assert unmarked(opening[0]) == unmarked(last_before[0])  # the same summary, replayed
    assert opening[-2]["content"][-1]["id"] == "toolu_0120"  # turn 120 asked...
    results = opening[-1]["content"]
    assert results[0]["tool_use_id"] == "toolu_0120"  # ...and its answer follows
    assert "goes on in a fresh sandbox" in results[-1]["text"]
    assert "memory" in [tool["name"] for tool in second.messages_requests[0].body["tools"]]

    events = transcript(stopped.run_dir)
    kinds = [e["type"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("resume") == 1 and kinds.count("end") == 2
    turns = [e["turn"] for e in events if e["type"] == "assistant"]
    assert turns == list(range(1, 202))
    assert events[-1]["usage"]["output_tokens"] > stopped.output_tokens  # totals carried on


async def test_a_run_stopped_inside_a_turn_runs_that_turns_calls_first(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    script = screenshot_script(8)
    first = await serve(api_nursery, script[:5])
    stopped = await run_agent(
        screen_orch,
        "look",
        tools=("screen",),
        api_key="k",
        base_url=first.url,
        run_root=tmp_path,
        max_turns=5,
        context=settings(),
    )
    # As if killed after turn 5's answer arrived, before its tool call ran.
    path = stopped.run_dir / "transcript.jsonl"
    lines = path.read_text().splitlines()
    answer = max(i for i, line in enumerate(lines) if json.loads(line)["type"] == "assistant")
    path.write_text("\n".join(lines[: answer + 1]) + "\n")

    second = await serve(api_nursery, script[5:])
    resumed = await resume_agent(
        screen_orch, stopped.run_dir, api_key="k", base_url=second.url, context=settings()
    )
    assert (resumed.stop_reason, resumed.turns) == ("end_turn", 9)
    opening = second.messages_requests[0].body["messages"]
    assert opening[-1]["content"][0]["tool_use_id"] == "toolu_0005"
    calls = [e for e in transcript(stopped.run_dir) if e["type"] == "tool_call"]
    assert [c["tool_use_id"] for c in calls].count("toolu_0005") == 1  # it never ran before


async def test_a_finished_run_resumes_only_with_a_follow_up(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    more = [Reply(tool_uses=[ToolUseReply(id="toolu_more", name="screen")]), Reply(text="Seen.")]
    server = await serve(api_nursery, screenshot_script(2) + more)
    done = await run_agent(
        screen_orch, "look", tools=("screen",), api_key="k", base_url=server.url, run_root=tmp_path
    )
    with pytest.raises(AgentError, match="give a follow-up task"):
        await resume_agent(screen_orch, done.run_dir, api_key="k", base_url=server.url)
    again = await resume_agent(
        screen_orch, done.run_dir, "now look once more", api_key="k", base_url=server.url
    )
    assert (again.stop_reason, again.turns) == ("end_turn", 5)
    last = server.messages_requests[3].body["messages"]
    assert last[-1]["content"][-1]["text"].endswith("now look once more")
    with pytest.raises(AgentError, match="no run directory"):
        await resume_agent(screen_orch, tmp_path / "nothing", api_key="k", base_url=server.url)


async def test_thinking_blocks_are_kept_across_tool_turns_and_compactions(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await serve(api_nursery, screenshot_script(60))
    result = await run_agent(
        screen_orch,
        "look, thinking",
        tools=("screen",),
        api_key="k",
        base_url=server.url,
        run_root=tmp_path,
        max_turns=80,
        max_tokens=4096,
        thinking_budget=2048,
        context=settings(),
    )
    assert (result.stop_reason, result.turns) == ("end_turn", 61)
    assert result.compactions >= 1
    for request in server.messages_requests:
        body = request.body
        if body.get("tool_choice"):
            assert "thinking" not in body
            continue
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        if len(body["messages"]) > 1:
            assert body["messages"][-2]["content"][0]["type"] == "thinking"
    with pytest.raises(AgentError, match="has no extended thinking"):
        await run_agent(
            screen_orch, "x", model="claude-3-5-sonnet-20241022", thinking_budget=2048, api_key="k"
        )
    with pytest.raises(AgentError, match="less than --max-tokens"):
        await run_agent(screen_orch, "x", thinking_budget=4096, max_tokens=4096, api_key="k")


async def test_without_compaction_the_run_stops_at_the_budget(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await serve(api_nursery, screenshot_script(200))
    result = await run_agent(
        screen_orch,
        "look",
        tools=("screen",),
        api_key="k",
        base_url=server.url,
        run_root=tmp_path,
        max_turns=250,
        context=settings(compaction=False),
    )
    assert result.stop_reason == "context_budget"
    assert 20 < result.turns < 200
    events = transcript(result.run_dir)
    assert [e for e in events if e["type"] == "context_full"]
    assert all(count_request(r.body) <= BUDGET for r in server.messages_requests)


async def test_context_editing_is_asked_for_where_the_model_takes_it(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await serve(api_nursery, screenshot_script(40))
    result = await run_agent(
        screen_orch,
        "look",
        tools=("screen",),
        api_key="k",
        base_url=server.url,
        run_root=tmp_path,
        max_turns=50,
        context=settings(context_editing=True),
    )
    assert result.stop_reason == "end_turn"
    request = server.messages_requests[0]
    assert "context-management-2025-06-27" in request.betas
    [edit] = request.body["context_management"]["edits"]
    assert edit["type"] == "clear_tool_uses_20250919"
    assert edit["trigger"] == {"type": "input_tokens", "value": BUDGET * 3 // 4}
    cleared = [
        e
        for e in transcript(result.run_dir)
        if e.get("context_management", {}).get("applied_edits")
    ]
    assert cleared  # the stand-in cleared old results past the trigger, as the API would


async def test_a_cancelled_run_says_so_and_resumes_after_its_last_whole_turn(
    screen_orch: Orchestrator, api_nursery: trio.Nursery, tmp_path: Path
) -> None:
    script = screenshot_script(8)
    first = await serve(api_nursery, script)
    with trio.CancelScope() as scope:

        def on_text(text: str) -> None:
            if text.startswith("Step 5"):
                scope.cancel()  # as Ctrl-C would, while turn 5 streams

        await run_agent(
            screen_orch,
            "look",
            tools=("screen",),
            api_key="k",
            base_url=first.url,
            run_root=tmp_path / "runs",
            on_text=on_text,
            context=settings(),
        )
    [run_dir] = list((tmp_path / "runs").iterdir())
    events = transcript(run_dir)
    assert events[-1]["type"] == "end"
    assert (events[-1]["stop_reason"], events[-1]["turns"]) == ("stopped", 4)

    second = await serve(api_nursery, script[4:])
    resumed = await resume_agent(
        screen_orch, run_dir, api_key="k", base_url=second.url, context=settings()
    )
    assert (resumed.stop_reason, resumed.turns) == ("end_turn", 9)
    opening = second.messages_requests[0].body["messages"]
    assert opening[-2]["content"][-1]["id"] == "toolu_0004"
