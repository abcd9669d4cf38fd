"""Agent steps: Claude works in the workflow's own session; its transcript keeps no secret."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from orchestrator import Config, Orchestrator
from orchestrator.testing.messages_api import MessagesAPIServer, Reply, ToolUseReply

SECRET = "agent-s3cret-token"


@pytest.fixture
async def api_nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def test_an_agent_step_works_in_the_workflows_session(
    orch: Orchestrator,
    fake_config: Config,
    api_nursery: trio.Nursery,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = fake_config.sandbox.workdir
    server = MessagesAPIServer(
        [
            Reply(
                text="Writing it.",
                tool_uses=[
                    ToolUseReply(name="bash", input={"command": f"echo from-claude > {ws}/c.txt"})
                ],
            ),
            Reply(text="Done."),
        ]
    )
    url = await api_nursery.start(server.serve)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "dry-run")
    flow = f"""\
secrets: {{token: {{env: WF_AGENT_SECRET}}}}
steps:
  - id: ask
    agent:
      task: "Write a file. Use the token ${{{{ secrets.token }}}}."
      tools: [bash, str_replace_based_edit_tool]
      max_turns: 4
      base_url: {url}
  - id: read
    needs: [ask]
    exec: "cat {ws}/c.txt"
outputs:
  said: "${{{{ steps.ask.text }}}}"
  turns: "${{{{ steps.ask.turns }}}}"
  file: "${{{{ steps.read.stdout }}}}"
"""
    monkeypatch.setenv("WF_AGENT_SECRET", SECRET)
    result = await orch.workflow(flow, run_root=tmp_path / "runs")
    assert result.ok, result.to_json()
    assert result.outputs == {"said": "Done.", "turns": 2, "file": "from-claude"}
    ask = result.steps["ask"]
    assert ask.outputs["stop_reason"] == "end_turn"
    # Claude was told the secret; the transcript on disk does not keep it.
    assert SECRET in str(server.requests[0].body["messages"])
    run_dir = Path(ask.details["run_dir"])
    transcript = (run_dir / "transcript.jsonl").read_text()
    # The step's input_tokens are every prompt token the API counted, cached or not.
    end = [json.loads(line) for line in transcript.splitlines()][-1]
    assert end["type"] == "end", end
    counted = sum(
        end["usage"][key]
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    assert ask.outputs["input_tokens"] == counted > 0
    assert SECRET not in transcript and "***" in transcript
    tools = [t["name"] for t in server.requests[0].body["tools"]]
    assert tools == ["bash", "str_replace_based_edit_tool"]
