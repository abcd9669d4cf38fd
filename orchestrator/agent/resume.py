"""A stopped run, read back from its run directory so that it can go on.

The transcript holds everything needed: the ``start`` event (task, model,
tools, system prompt, image, limits), every assistant message whole (thinking
blocks and signatures included), every turn's tool results (images as files
beside it), every user text added, and every compaction (its summary and the
first turn it kept).  Replaying them in order rebuilds the conversation the
run had when it stopped, and where it stopped: after an assistant message
whose tool calls never ran (they run first, in the new sandbox), after a
turn's tool results (the next turn follows), or after a final answer (a
follow-up task is needed to go on).

Must not: start sandboxes or call the API (the loop does), or trust the
transcript's file names to leave the run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.agent.calls import AgentError
from orchestrator.agent.history import Conversation
from orchestrator.agent.transcript import inline_images, read_transcript
from orchestrator.agent.usage import Usage

__all__ = ["StoppedRun", "load_run"]


@dataclass
class StoppedRun:
    run_dir: Path
    start: dict[str, Any]
    """The run's ``start`` event."""
    conversation: Conversation
    image: str | None
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    """How the run last ended (``end`` event), if it ended at all."""
    snapshot: str | None = None
    """The snapshot image kept when it stopped (``agent.snapshot_on_stop``), if any: the
    image the run goes on in."""

    @property
    def last_turn(self) -> int:
        return self.conversation.last_turn

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Tool calls of the last turn that never ran."""
        return self.conversation.pending_tool_uses()

    @property
    def answered(self) -> bool:
        """The last message is the model's, with no tool call: it has answered."""
        last = self.conversation.messages[-1]
        return last["role"] == "assistant" and not self.pending


def load_run(run_dir: Path | str) -> StoppedRun:
    """The run in ``run_dir``, replayed from its transcript."""
    path = Path(run_dir)
    if not (path / "transcript.jsonl").is_file():
        raise AgentError(
            f"{path} is no run directory (it has no transcript.jsonl); give the directory an "
            "earlier `sbx agent` printed (runs/<stamp>-<id>)"
        )
    try:
        events = read_transcript(path)
        return _replay(path, events)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise AgentError(
            f"cannot resume the run in {path}: its transcript is damaged ({exc})"
        ) from None


def _replay(path: Path, events: list[dict[str, Any]]) -> StoppedRun:
    starts = [event for event in events if event.get("type") == "start"]
    if not starts:
        raise ValueError("it has no start event")
    start = starts[0]
    run = StoppedRun(path, start, Conversation(str(start["task"])), start.get("image"))
    for event in events:
        kind = event.get("type")
        conversation = run.conversation
        if kind == "session":
            run.image = event.get("image") or run.image
            run.snapshot = None  # a later stop keeps its own
        elif kind == "snapshot" and event.get("image"):
            run.image = run.snapshot = str(event["image"])
        elif kind == "assistant":
            conversation.add_assistant(int(event["turn"]), list(event["content"]))
            run.usage = run.usage + Usage.of(event.get("usage") or {})
        elif kind == "tool_results":
            conversation.add_results(int(event["turn"]), inline_images(event["content"], path))
        elif kind == "user":
            conversation.add_user_text(int(event["turn"]), str(event["text"]))
        elif kind == "compaction":
            cut = conversation.index_of_turn(int(event["kept_from_turn"]))
            conversation.compact(str(event["summary"]), cut)
            run.usage = run.usage + Usage.of(event.get("usage") or {})
        elif kind == "end":
            run.stop_reason = event.get("stop_reason")
    return run
