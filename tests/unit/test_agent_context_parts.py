"""The pieces of the agent's context management, alone: trimming, breakpoints, history, cost."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from orchestrator.agent.budget import ContextBudget, estimate_tokens
from orchestrator.agent.caching import mark_messages, mark_system, mark_tools
from orchestrator.agent.history import Conversation
from orchestrator.agent.images import count_images, png_size, trim_images
from orchestrator.agent.request import SUMMARY_INSTRUCTION, RequestPlan
from orchestrator.agent.usage import Usage, cost_of
from orchestrator.config import AgentConfig, load_config
from orchestrator.errors import ConfigError
from orchestrator.testing.api_rules import refusal
from orchestrator.testing.api_script import sign_thinking
from orchestrator.testing.screens import synthetic_screen

PNG = base64.b64encode(synthetic_screen(0, 640, 480)).decode()


def _image() -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def _conversation(turns: int, *, thinking: bool = False) -> Conversation:
    """A run of ``turns`` screenshot turns, each answered."""
    conversation = Conversation("look around")
    for turn in range(1, turns + 1):
        content: list[dict[str, Any]] = []
        if thinking:
            text = f"t{turn}"
            content.append({"type": "thinking", "thinking": text, "signature": sign_thinking(text)})
        content += [
            {"type": "text", "text": f"step {turn}"},
            {
                "type": "tool_use",
                "id": f"toolu_{turn}",
                "name": "computer",
                "input": {"action": "screenshot"},
            },
        ]
        conversation.add_assistant(turn, content)
        result = {
            "type": "tool_result",
            "tool_use_id": f"toolu_{turn}",
            "content": [_image()],
        }
        conversation.add_results(turn, [result])
    return conversation


def test_png_size_reads_the_header() -> None:
    assert png_size(PNG) == (640, 480)
    assert png_size("bm90IGEgcG5n") is None


@pytest.mark.parametrize(
    ("images", "carried"),
    [(1, 1), (3, 3), (4, 2), (5, 3), (6, 2), (7, 3), (8, 2), (200, 2), (201, 3)],
)
def test_a_request_carries_at_most_keep_images_replaced_step_at_a_time(
    images: int, carried: int
) -> None:
    conversation = _conversation(images)
    turns = [entry.turn for entry in conversation.entries]
    view = trim_images(conversation.messages, keep=3, step=2, turns=turns)
    assert count_images(view.messages) == view.carried == carried
    assert view.replaced == images - carried
    assert view.replaced % 2 == 0
    assert count_images(conversation.messages) == images  # the history keeps every image


def test_a_replaced_image_says_what_it_was_and_stays_the_same_words() -> None:
    conversation = _conversation(6)
    turns = [entry.turn for entry in conversation.entries]
    first = trim_images(conversation.messages, 3, 2, turns)
    conversation.add_assistant(7, [{"type": "text", "text": "more"}])
    later = trim_images(conversation.messages, 3, 2, [*turns, 7])
    placeholder = first.messages[2]["content"][0]["content"][0]
    assert placeholder == {
        "type": "text",
        "text": "[a 640x480 image the computer tool returned (screenshot) in turn 1: "
        "omitted to save context; newer screenshots follow]",
    }
    assert later.messages[:9] == first.messages[:9]  # same view: the cached prefix holds
    assert first.first_carried == 10  # turn 5's results: the first image still carried


def test_keep_images_zero_sends_every_image() -> None:
    conversation = _conversation(9)
    view = trim_images(conversation.messages, 0, 2)
    assert view.carried == 9 and view.messages == conversation.messages


def test_breakpoints_sit_on_the_tools_the_system_the_stable_end_and_the_last_message() -> None:
    conversation = _conversation(6)
    view = trim_images(conversation.messages, 3, 2)
    messages = mark_messages(view.messages, view.first_carried)
    marked = [i for i, m in enumerate(messages) if any("cache_control" in b for b in m["content"])]
    assert marked == [view.first_carried - 1, len(messages) - 1]  # type: ignore[operator]
    assert "cache_control" not in json.dumps(conversation.messages)  # the history untouched
    tools = mark_tools([{"name": "a"}, {"name": "b"}])
    assert "cache_control" not in tools[0] and tools[1]["cache_control"] == {"type": "ephemeral"}
    assert mark_system("be brief")[0]["cache_control"] == {"type": "ephemeral"}


def test_without_images_the_third_breakpoint_is_the_previous_turn() -> None:
    conversation = Conversation("count")
    for turn in (1, 2):
        use = {"type": "tool_use", "id": f"t{turn}", "name": "bash", "input": {}}
        conversation.add_assistant(turn, [{"type": "thinking", "thinking": "x"}, use])
        conversation.add_results(turn, [{"type": "tool_result", "tool_use_id": f"t{turn}"}])
    messages = mark_messages(conversation.messages, None)
    marked = [i for i, m in enumerate(messages) if any("cache_control" in b for b in m["content"])]
    assert marked == [2, 4]  # turn 1's results (the last request's end) and the newest
    thinking_only = mark_messages([{"role": "assistant", "content": [{"type": "thinking"}]}], 0)
    assert "cache_control" not in json.dumps(thinking_only)  # never on a thinking block


def test_compaction_keeps_the_task_the_summary_and_whole_tool_pairs() -> None:
    conversation = _conversation(10, thinking=True)
    cut = conversation.cut_points()[-3]
    assert conversation.messages[cut]["role"] == "assistant"
    first, last = conversation.compact("did ten screenshots", cut)
    assert (first, last) == (1, 7)
    opening = conversation.messages[0]["content"]
    assert opening[0]["text"] == "look around"
    assert opening[1]["text"].endswith("did ten screenshots")
    assert [e.turn for e in conversation.entries] == [0, 8, 8, 9, 9, 10, 10]
    body = {"messages": conversation.messages, "tools": [{"name": "computer"}]}
    assert refusal(body, []) is None
    assert conversation.messages[-2]["content"][0]["type"] == "thinking"
    with pytest.raises(ValueError, match="cannot cut"):
        conversation.compact("x", 2)  # before a user message: never


def test_the_summary_request_is_the_prefix_plus_the_instruction_without_tools() -> None:
    conversation = _conversation(8, thinking=True)
    plan = RequestPlan("m", 4096, "sys", [{"name": "computer"}], [], AgentConfig(), 2048)
    turn = plan.build(conversation)
    cut = conversation.cut_points()[-4]
    summary = plan.build_summary(conversation, cut)
    params = summary.params
    assert params["tool_choice"] == {"type": "none"}
    assert "thinking" not in params and "thinking" in turn.params
    assert params["messages"][-1]["content"][-1]["text"] == SUMMARY_INSTRUCTION
    assert len(params["messages"]) == cut
    assert all(b["type"] != "thinking" for m in params["messages"] for b in m["content"])
    assert refusal(params, []) is None


def test_the_budget_counts_only_near_its_end() -> None:
    budget = ContextBudget(10_000)
    request = {"messages": [{"role": "user", "content": "x" * 300}]}
    assert not budget.needs_count(request)
    budget.observed(8_000)
    assert not budget.needs_count(request)
    budget.add([_image()])  # 640x480: about 410 tokens
    budget.add("y" * 3000)
    assert budget.needs_count(request)
    assert estimate_tokens(_image()) == 411
    assert not ContextBudget(0).needs_count(request)


def test_usage_and_cost_follow_the_price_list() -> None:
    usage = Usage.of(
        {
            "input_tokens": 1000,
            "output_tokens": 2000,
            "cache_read_input_tokens": 100_000,
            "cache_creation_input_tokens": 10_000,
        }
    )
    assert usage.prompt_tokens == 111_000
    config = AgentConfig()
    price = config.price_of("claude-sonnet-4-5-20250929")
    assert price == config.prices["claude-sonnet-4-5"]
    assert cost_of(usage, price) == pytest.approx((3_000 + 30_000 + 30_000 + 37_500) / 1e6)
    assert config.price_of("claude-opus-4-20250514") == config.prices["claude-opus-4"]
    assert config.price_of("claude-opus-4-5") == config.prices["claude-opus-4-5"]
    assert cost_of(usage, config.price_of("someone-elses-model")) is None


def test_agent_keys_are_checked_and_prices_add_to_the_defaults() -> None:
    config = load_config(
        agent={
            "prices": {
                "my-model": {"input": 1, "output": 2, "cache_read": 0.1, "cache_write": 1.25}
            }
        }
    )
    assert config.agent.price_of("my-model-v2") is not None
    assert config.agent.price_of("claude-haiku-4-5") is not None
    with pytest.raises(ConfigError, match="image_trim_step"):
        load_config(agent={"keep_images": 2, "image_trim_step": 3})
    with pytest.raises(ConfigError, match="context_budget"):
        load_config(agent={"context_budget": 100})
