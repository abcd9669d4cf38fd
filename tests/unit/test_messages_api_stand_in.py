"""The Messages API stand-in: token counts, the prompt cache, and what it refuses like the API.

Driven through the real ``anthropic`` SDK, as the agent loop drives it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
import trio

from orchestrator.testing.api_script import sign_thinking
from orchestrator.testing.api_tokens import image_size
from orchestrator.testing.messages_api import MessagesAPIServer, Reply, ToolUseReply
from orchestrator.testing.screens import synthetic_screen

LONG = "word " * 2000  # about 2500 tokens: over the cache's minimum


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def serve(nursery: trio.Nursery, replies: list[Any], **kw: Any) -> MessagesAPIServer:
    server = MessagesAPIServer(replies, **kw)
    await nursery.start(server.serve)
    return server


def client(server: MessagesAPIServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="k", base_url=server.url, max_retries=0)


def user(text: str, *, cache: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if cache:
        block["cache_control"] = {"type": "ephemeral"}
    return {"role": "user", "content": [block]}


async def test_count_tokens_answers_and_counts_images_by_their_area(
    nursery: trio.Nursery,
) -> None:
    server = await serve(nursery, [])
    png = synthetic_screen(1, 1024, 768)
    assert image_size(base64.b64encode(png).decode()) == (1024, 768)
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png)},
    }
    image["source"]["data"] = image["source"]["data"].decode()  # type: ignore[index]
    c = client(server)
    text_only = await c.messages.count_tokens(model="m", messages=[user("hello there")])
    with_image = await c.messages.count_tokens(
        model="m", messages=[{"role": "user", "content": [image, {"type": "text", "text": "hi"}]}]
    )
    assert 0 < text_only.input_tokens < 20
    assert with_image.input_tokens - text_only.input_tokens >= 1024 * 768 // 750 - 10
    assert server.requests[0].is_count
    assert server.remaining == 0  # counting consumes no scripted reply


async def test_a_cache_read_needs_an_identical_prefix_up_to_a_breakpoint(
    nursery: trio.Nursery,
) -> None:
    server = await serve(nursery, [Reply(text="ok")] * 4)
    c = client(server)
    system: list[Any] = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    first = await c.messages.create(model="m", max_tokens=10, system=system, messages=[user("one")])
    again = await c.messages.create(model="m", max_tokens=10, system=system, messages=[user("two")])
    changed = [{**system[0], "text": LONG + "!"}]
    other = await c.messages.create(
        model="m", max_tokens=10, system=changed, messages=[user("one")]
    )
    plain = await c.messages.create(model="m", max_tokens=10, system=LONG, messages=[user("one")])
    assert first.usage.cache_creation_input_tokens and not first.usage.cache_read_input_tokens
    assert again.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert not again.usage.cache_creation_input_tokens
    assert not other.usage.cache_read_input_tokens  # one character differs: a new write
    assert not plain.usage.cache_read_input_tokens and not plain.usage.cache_creation_input_tokens
    total = first.usage.input_tokens + (first.usage.cache_creation_input_tokens or 0)
    assert plain.usage.input_tokens == total  # the same prompt, uncached


def _conversation(prefix: str, pairs: int) -> list[dict[str, Any]]:
    """A long first message, then ``pairs`` short exchanges; the breakpoint on the last."""
    messages = [user(LONG)]
    for i in range(pairs):
        messages += [{"role": "assistant", "content": f"{prefix}a{i}"}, user(f"{prefix}u{i}")]
    messages[-1] = user(f"{prefix}u{pairs - 1}", cache=True)
    return messages


async def test_the_cache_looks_back_twenty_blocks_from_a_breakpoint(
    nursery: trio.Nursery,
) -> None:
    server = await serve(nursery, [Reply(text="ok")] * 4)
    c = client(server)
    await c.messages.create(model="m", max_tokens=10, messages=[user(LONG, cache=True)])
    near = await c.messages.create(model="m", max_tokens=10, messages=_conversation("x", 9))
    longer = await c.messages.create(model="m", max_tokens=10, messages=_conversation("x", 11))
    far = await c.messages.create(model="m", max_tokens=10, messages=_conversation("y", 11))
    first_prompt = near.usage.cache_read_input_tokens
    assert first_prompt  # the first prompt's entry, 18 blocks before the breakpoint
    assert (longer.usage.cache_read_input_tokens or 0) > first_prompt  # the second's, 4 back
    assert not far.usage.cache_read_input_tokens  # the only match is 22 blocks back


async def test_more_than_four_breakpoints_are_refused(nursery: trio.Nursery) -> None:
    server = await serve(nursery, [Reply(text="never")])
    messages = [user(f"m{i}", cache=True) for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks with cache_control"):
        await client(server).messages.create(model="m", max_tokens=10, messages=messages)  # type: ignore[arg-type]


def _tool_use(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "bash", "input": {"command": "true"}}


def _result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (
            [user("go"), {"role": "assistant", "content": [_tool_use("t1")]}, user("where?")],
            "ids were found without `tool_result` blocks immediately after: t1",
        ),
        (
            [
                user("go"),
                {"role": "assistant", "content": [_tool_use("t1")]},
                {"role": "user", "content": [_result("t1"), _result("t2")]},
            ],
            "unexpected `tool_use_id` found in `tool_result` blocks: t2",
        ),
        (
            [{"role": "user", "content": [_result("t0")]}],
            "unexpected `tool_use_id`",
        ),
    ],
)
async def test_broken_tool_pairs_are_refused(
    nursery: trio.Nursery, messages: list[Any], error: str
) -> None:
    server = await serve(nursery, [Reply(text="never")])
    tools = [{"type": "bash_20250124", "name": "bash"}]
    with pytest.raises(anthropic.BadRequestError, match=error):
        await client(server).messages.create(
            model="m",
            max_tokens=10,
            messages=messages,
            tools=tools,  # type: ignore[list-item]
        )


async def test_thinking_is_sent_when_asked_and_must_come_back_unchanged(
    nursery: trio.Nursery,
) -> None:
    server = await serve(
        nursery,
        [Reply(thinking="Let me think.", tool_uses=[ToolUseReply(id="t1", name="bash")])] * 2
        + [Reply(text="never")] * 2,
    )
    c = client(server)
    tools: Any = [{"type": "bash_20250124", "name": "bash"}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    plain = await c.messages.create(model="m", max_tokens=2000, messages=[user("go")], tools=tools)
    assert [b.type for b in plain.content] == ["tool_use"]
    async with c.messages.stream(
        model="m", max_tokens=2000, messages=[user("go")], tools=tools, thinking=thinking
    ) as stream:
        streamed = await stream.get_final_message()
    assert [b.type for b in streamed.content] == ["thinking", "tool_use"]
    block = streamed.content[0]
    assert block.type == "thinking"
    assert block.signature == sign_thinking("Let me think.")
    kept = {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    altered = {**kept, "thinking": "Something else."}
    for content, error in (
        ([altered, _tool_use("t1")], "Invalid `signature` in `thinking` block"),
        ([_tool_use("t1")], "a final `assistant` message must start with a thinking block"),
    ):
        with pytest.raises(anthropic.BadRequestError, match=error):
            await c.messages.create(
                model="m",
                max_tokens=2000,
                tools=tools,
                thinking=thinking,
                messages=[
                    user("go"),
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": [_result("t1")]},
                ],
            )
    with pytest.raises(anthropic.BadRequestError, match=r"greater than `thinking\.budget_tokens`"):
        await c.messages.create(
            model="m", max_tokens=1024, messages=[user("go")], thinking=thinking
        )


async def test_context_editing_clears_old_tool_results_past_its_trigger(
    nursery: trio.Nursery,
) -> None:
    server = await serve(nursery, [Reply(text="ok")] * 2)
    messages: list[Any] = [user("go")]
    for i in range(6):
        messages.append({"role": "assistant", "content": [_tool_use(f"t{i}")]})
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": LONG}],
            }
        )
    messages.append({"role": "assistant", "content": "done"})
    messages.append(user("and now?"))
    edits: Any = {
        "edits": [
            {
                "type": "clear_tool_uses_20250919",
                "trigger": {"type": "input_tokens", "value": 5000},
                "keep": {"type": "tool_uses", "value": 2},
            }
        ]
    }
    tools: Any = [{"type": "bash_20250124", "name": "bash"}]
    c = client(server)
    with pytest.raises(anthropic.BadRequestError, match="context-management-2025-06-27"):
        await c.beta.messages.create(
            model="m", max_tokens=10, messages=messages, tools=tools, context_management=edits
        )
    counted = await c.beta.messages.count_tokens(
        model="m",
        messages=messages,
        tools=tools,
        context_management=edits,
        betas=["context-management-2025-06-27"],
    )
    answer = await c.beta.messages.create(
        model="m",
        max_tokens=10,
        messages=messages,
        tools=tools,
        context_management=edits,
        betas=["context-management-2025-06-27"],
    )
    assert answer.context_management is not None
    [edit] = answer.context_management.applied_edits
    assert edit.type == "clear_tool_uses_20250919"
    assert edit.cleared_tool_uses == 4
    assert counted.context_management is not None
    original = counted.context_management.original_input_tokens
    assert original > 15_000  # six results of about 2500 tokens
    assert 5000 < counted.input_tokens < 6000  # the two newest are kept


async def test_a_prompt_over_the_window_is_refused(nursery: trio.Nursery) -> None:
    server = await serve(nursery, [Reply(text="never")], max_input_tokens=1000)
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        await client(server).messages.create(model="m", max_tokens=10, messages=[user(LONG)])


async def test_a_request_that_forbids_tools_gets_a_summary_off_the_script(
    nursery: trio.Nursery,
) -> None:
    server = await serve(nursery, [Reply(text="scripted")])
    c = client(server)
    summary = await c.messages.create(
        model="m",
        max_tokens=100,
        messages=[user("go"), {"role": "assistant", "content": "did X"}, user("summarise")],
        tools=[{"type": "bash_20250124", "name": "bash"}],
        tool_choice={"type": "none"},
    )
    assert summary.content[0].type == "text"
    assert "did X" in summary.content[0].text
    assert server.remaining == 1
