"""``sbx bench --agent``: what context management saves over a long screenshot run.

One scripted run of ``turns`` turns (200 by default), each returning a
screenshot, is made twice against the local Messages API stand-in, in a real
sandbox: once with the ``[agent]`` settings (screenshots trimmed, prompt
caching, compaction at ``--budget`` tokens), once with all three off.  For
each it prints the bytes of every request sent, the input tokens the
stand-in counted (uncached, cache reads, cache writes), what that input would
bill as (cache reads at a tenth, writes at five quarters), the largest
request, and the cost at the model's list price; then the ratios.

The screenshots are the desktop's own (the ``computer`` tool moving the
mouse over two terminals full of text), or with ``--fake-screens`` synthetic
ones from the ``screen`` tool in a code-runner sandbox, without X.

Must not: reach the cloud API (the stand-in answers), or judge the figures
against targets (they depend on the script; they are for comparing the two).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from orchestrator.config import AgentConfig, Config
from orchestrator.testing.messages_api import MessagesAPIServer, RecordedRequest, ToolUseReply
from orchestrator.testing.screens import ScreenTool, screenshot_script
from orchestrator.tools.versions import DEFAULT_MODEL

__all__ = ["collect_agent", "format_agent"]

TASK = "Check the screen after every step, {turns} times, and say when done."
_TERMINALS = (
    "for g in 100x40+0+0 100x40+520+300; do "
    "xterm -geometry $g -e sh -c 'ls -laR /usr/share | head -5000; sleep 3600' & done; sleep 1"
)


def _script(turns: int, desktop: bool) -> list[Any]:
    replies = screenshot_script(turns, "computer" if desktop else "screen")
    if desktop:  # the first turn opens two terminals full of text, so screens are realistic
        opener = ToolUseReply(id="toolu_open", name="bash", input={"command": _TERMINALS})
        replies[0] = replies[0].model_copy(update={"tool_uses": [opener, *replies[0].tool_uses]})
    return replies


def _figures(requests: list[RecordedRequest], result: Any, seconds: float) -> dict[str, Any]:
    answered = [r for r in requests if not r.is_count and r.usage]
    used = {
        key: sum(int(r.usage.get(key) or 0) for r in answered)
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    }
    prompts = [
        int(r.usage.get("input_tokens") or 0)
        + int(r.usage.get("cache_read_input_tokens") or 0)
        + int(r.usage.get("cache_creation_input_tokens") or 0)
        for r in answered
    ]
    billed = (
        used["input_tokens"]
        + 0.1 * used["cache_read_input_tokens"]
        + 1.25 * used["cache_creation_input_tokens"]
    )
    return {
        "stop_reason": result.stop_reason,
        "turns": result.turns,
        "requests": len(answered),
        "count_tokens_calls": sum(1 for r in requests if r.is_count),
        "request_bytes": sum(r.size for r in requests),
        "largest_request_bytes": max((r.size for r in requests), default=0),
        "input_tokens": sum(prompts),
        "uncached_input_tokens": used["input_tokens"],
        "cache_read_tokens": used["cache_read_input_tokens"],
        "cache_write_tokens": used["cache_creation_input_tokens"],
        "billed_input_tokens": round(billed),
        "largest_prompt_tokens": max(prompts, default=0),
        "compactions": result.compactions,
        "cost_usd": result.cost_usd,
        "seconds": round(seconds, 1),
    }


async def collect_agent(
    config: Config,
    turns: int = 200,
    *,
    fake_screens: bool = False,
    budget: int = 20_000,
    image: str | None = None,
) -> dict[str, Any]:
    from orchestrator.agent import run_agent
    from orchestrator.runtime import Orchestrator

    desktop = not fake_screens
    managed = AgentConfig.model_validate({**config.agent.model_dump(), "context_budget": budget})
    off = AgentConfig.model_validate(
        {
            **config.agent.model_dump(),
            "keep_images": 0,
            "prompt_caching": False,
            "context_budget": 0,
            "compaction": False,
            "context_editing": False,
        }
    )
    report: dict[str, Any] = {
        "turns": turns,
        "screens": "desktop" if desktop else "synthetic",
        "model": DEFAULT_MODEL,
        "context_budget": budget,
        "keep_images": managed.keep_images,
        "image_trim_step": managed.image_trim_step,
    }
    config = config.model_copy(update={"reap_orphans": False})
    tools = ("computer", "bash") if desktop else ("screen",)
    with tempfile.TemporaryDirectory(prefix="sbx-bench-agent-") as scratch:
        async with Orchestrator(config) as orch:
            if not desktop:
                orch.router.registry.register(ScreenTool())
            for name, settings in (("managed", managed), ("off", off)):
                server = MessagesAPIServer(_script(turns, desktop))
                async with trio.open_nursery() as nursery:
                    await nursery.start(server.serve)
                    started = time.perf_counter()
                    result = await run_agent(
                        orch,
                        TASK.format(turns=turns),
                        image=image or ("desktop" if desktop else None),
                        tools=tools,
                        api_key="bench",
                        base_url=server.url,
                        run_root=Path(scratch) / name,
                        max_turns=turns + 5,
                        context=settings,
                    )
                    seconds = time.perf_counter() - started
                    nursery.cancel_scope.cancel()
                report[name] = _figures(server.requests, result, seconds)
    on, off_figures = report["managed"], report["off"]
    report["ratios"] = {
        key: round(off_figures[key] / on[key], 1) if on[key] else None
        for key in ("request_bytes", "input_tokens", "billed_input_tokens", "cost_usd")
    }
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return report


def format_agent(report: dict[str, Any]) -> str:
    on, off, ratios = report["managed"], report["off"], report["ratios"]
    lines = [
        f"sbx bench --agent — {report['turns']} turns, a {report['screens']} screenshot each, "
        f"{report['model']} prices; managed: keep_images {report['keep_images']} (step "
        f"{report['image_trim_step']}), prompt caching, context_budget "
        f"{report['context_budget']}; off: all images, no caching, no budget",
        f"  {'':<42}{'managed':>14}{'off':>16}{'off/managed':>13}",
    ]

    def row(label: str, key: str, ratio: bool = False, digits: int = 0) -> None:
        def cell(value: Any) -> str:
            return "-" if value is None else f"{value:,.{digits}f}"

        shown = f"{ratios[key]}x" if ratio and ratios.get(key) is not None else ""
        lines.append(f"  {label:<42}{cell(on[key]):>14}{cell(off[key]):>16}{shown:>13}")

    row("requests answered", "requests")
    row("count_tokens calls", "count_tokens_calls")
    row("request bytes, total", "request_bytes", ratio=True)
    row("largest request, bytes", "largest_request_bytes")
    row("input tokens, total", "input_tokens", ratio=True)
    row("  of which cache reads", "cache_read_tokens")
    row("  of which cache writes", "cache_write_tokens")
    row("input billed as (reads x0.1, writes x1.25)", "billed_input_tokens", ratio=True)
    row("largest prompt, tokens", "largest_prompt_tokens")
    row("compactions", "compactions")
    row("estimated cost, $", "cost_usd", ratio=True, digits=4)
    row("seconds", "seconds", digits=1)
    return "\n".join(lines)
