"""Context management end to end: real SDK, local Messages API stand-in, real sandboxes.

A desktop run with the computer tool (real screenshots) is trimmed, cached
and compacted under a budget the stand-in enforces as its window; and
``sbx agent --resume`` continues a stopped run in a fresh sandbox, where the
memory tool still holds what the first sandbox saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from orchestrator import Orchestrator
from orchestrator.agent import run_agent
from orchestrator.config import AgentConfig
from orchestrator.testing.api_tokens import count_request
from orchestrator.testing.messages_api import MessagesAPIServer, Reply, ToolUseReply
from orchestrator.testing.screens import screenshot_script

from .conftest import IMAGE

SBX = [sys.executable, "-m", "orchestrator.cli"]


def _images(body: dict[str, Any]) -> int:
    text = json.dumps(body["messages"])
    return text.count('"type": "image"')


async def test_a_desktop_run_is_trimmed_cached_and_compacted_under_its_budget(
    orch: Orchestrator, tmp_path: Path
) -> None:
    budget = 5500
    server = MessagesAPIServer(screenshot_script(24, "computer"), max_input_tokens=budget)
    context = AgentConfig(context_budget=budget, keep_images=3, image_trim_step=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        result = await run_agent(
            orch,
            "move the mouse around and look",
            tools=("computer",),
            api_key="k",
            base_url=server.url,
            run_root=tmp_path,
            max_turns=30,
            context=context,
        )
        nursery.cancel_scope.cancel()
    assert (result.stop_reason, result.turns) == ("end_turn", 25), result
    assert result.compactions >= 1
    assert result.cache_read_tokens > 0
    for request in server.messages_requests:
        assert count_request(request.body) <= budget
        assert _images(request.body) <= 3
    turns = [r for r in server.messages_requests if not r.body.get("tool_choice")]
    assert {_images(r.body) for r in turns[4:]} == {2, 3}  # replaced two at a time
    shots = sorted(result.run_dir.glob("*.png"))
    assert len(shots) == 24  # the transcript keeps every screenshot; only requests are trimmed


async def _sbx(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*SBX, *args], capture_stdout=True, capture_stderr=True, check=False, env=env
    )


async def test_sbx_agent_resume_goes_on_in_a_fresh_sandbox_with_the_memory_tool(
    tmp_path: Path,
) -> None:
    note = "/memories/progress.md"
    script = [
        Reply(
            text="Noting progress.",
            tool_uses=[
                ToolUseReply(
                    id="toolu_m1",
                    name="memory",
                    input={"command": "create", "path": note, "file_text": "step 1 done"},
                )
            ],
        ),
        Reply(
            text="Working.",
            tool_uses=[ToolUseReply(id="toolu_b1", name="bash", input={"command": "touch x"})],
        ),
        Reply(
            text="Where was I?",
            tool_uses=[
                ToolUseReply(id="toolu_m2", name="memory", input={"command": "view", "path": note}),
                ToolUseReply(id="toolu_b2", name="bash", input={"command": "ls x || echo gone"}),
            ],
        ),
        Reply(text="Resumed and finished."),
    ]
    server = MessagesAPIServer(script)
    env = {
        **os.environ,
        "SBX_MEMORY__ROOT": str(tmp_path / "memories"),
        "SBX_SANDBOX__IMAGE": IMAGE,
        "ANTHROPIC_API_KEY": "k",
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        first = await _sbx(
            "agent",
            "--tools",
            "bash,memory",
            "--max-turns",
            "2",
            "--base-url",
            server.url,
            "--runs",
            str(tmp_path / "runs"),
            "do it in steps",
            env=env,
        )
        [run_dir] = list((tmp_path / "runs").iterdir())
        second = await _sbx("agent", "--resume", str(run_dir), "--base-url", server.url, env=env)
        nursery.cancel_scope.cancel()
    assert first.returncode == 0, first.stderr.decode()
    assert b"[max_turns after 2 turn(s)" in first.stderr
    assert second.returncode == 0, second.stderr.decode()
    assert b"[end_turn after 4 turn(s)" in second.stderr
    assert b"Resumed and finished." in second.stdout
    touched, resume_note = server.messages_requests[2].body["messages"][-1]["content"]
    assert touched["tool_use_id"] == "toolu_b1"
    assert "goes on in a fresh sandbox" in resume_note["text"]
    memory, listing = server.messages_requests[3].body["messages"][-1]["content"]
    assert "step 1 done" in json.dumps(memory["content"])  # /memories outlived the sandbox
    assert "gone" in json.dumps(listing["content"])  # the workspace did not
    events = [json.loads(x) for x in (run_dir / "transcript.jsonl").read_text().splitlines()]
    sessions = [e["session_id"] for e in events if e["type"] == "session"]
    assert len(sessions) == 2 and sessions[0] != sessions[1]


async def test_sbx_bench_agent_compares_the_managed_run_with_the_unmanaged_one() -> None:
    done = await trio.run_process(
        [*SBX, "bench", "--agent", "--fake-screens", "--turns", "30", "--budget", "4500", "--json"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    managed, off = report["managed"], report["off"]
    assert managed["turns"] == off["turns"] == 31
    assert managed["compactions"] >= 1 and off["compactions"] == 0
    assert managed["largest_prompt_tokens"] <= 4500 < off["largest_prompt_tokens"]
    assert off["cache_read_tokens"] == 0 < managed["cache_read_tokens"]
    for key in ("request_bytes", "input_tokens", "billed_input_tokens", "cost_usd"):
        assert report["ratios"][key] > 1


async def test_a_run_kept_as_a_snapshot_resumes_with_its_files(tmp_path: Path) -> None:
    script = [
        Reply(
            text="Working.",
            tool_uses=[
                ToolUseReply(
                    id="toolu_b1",
                    name="bash",
                    input={"command": "echo halfway > /workspace/progress.txt"},
                )
            ],
        ),
        Reply(
            text="Where was I?",
            tool_uses=[
                ToolUseReply(
                    id="toolu_b2", name="bash", input={"command": "cat /workspace/progress.txt"}
                )
            ],
        ),
        Reply(text="Resumed and finished."),
    ]
    server = MessagesAPIServer(script)
    env = {
        **os.environ,
        "SBX_MEMORY__ROOT": str(tmp_path / "memories"),
        "SBX_SANDBOX__IMAGE": IMAGE,
        "ANTHROPIC_API_KEY": "k",
    }
    snapshot = ""
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            first = await _sbx(
                "agent",
                "--max-turns",
                "1",
                "--snapshot-on-stop",
                "--base-url",
                server.url,
                "--runs",
                str(tmp_path / "runs"),
                "do it in steps",
                env=env,
            )
            assert first.returncode == 0, first.stderr.decode()
            [run_dir] = list((tmp_path / "runs").iterdir())
            events = [
                json.loads(x) for x in (run_dir / "transcript.jsonl").read_text().split("\n") if x
            ]
            [kept] = [e for e in events if e["type"] == "snapshot"]
            snapshot = kept["image"]
            second = await _sbx(
                "agent", "--resume", str(run_dir), "--base-url", server.url, env=env
            )
            nursery.cancel_scope.cancel()
        assert second.returncode == 0, second.stderr.decode()
        assert b"Resumed and finished." in second.stdout
        [note] = [
            block
            for block in server.messages_requests[1].body["messages"][-1]["content"]
            if block.get("type") == "text"
        ]
        assert "made from a snapshot of the old one" in note["text"]
        listing = server.messages_requests[2].body["messages"][-1]["content"][0]
        assert "halfway" in json.dumps(listing["content"])  # the files came along
        events = [
            json.loads(x) for x in (run_dir / "transcript.jsonl").read_text().split("\n") if x
        ]
        sessions = [e for e in events if e["type"] == "session"]
        assert sessions[1]["image"] == snapshot
    finally:
        if snapshot:
            await _sbx("images", "rm", snapshot, env=env)
