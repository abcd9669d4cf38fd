"""Agent runs started over HTTP: run in the server's nursery, watched as event streams.

Each run keeps a bounded log of its events (text deltas, tool calls, the end)
for clients that follow it live; the complete record is the run directory's
transcript, which is served as is.  Runs belong to the token owner who
started them, and call the Messages API their ``MessagesTarget`` names (see
``agent_access``).  It must not speak HTTP: the routes in
``routes/agent_runs.py`` do.
"""

from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio

from orchestrator.api.models import AgentRunCreate, AgentRunInfo

if TYPE_CHECKING:
    from orchestrator.api.agent_access import MessagesTarget
    from orchestrator.router import ToolCallEvent
    from orchestrator.runtime import Orchestrator

__all__ = ["AgentRun", "AgentRuns"]

log = structlog.get_logger("orchestrator.api")

MAX_EVENTS = 10_000


@dataclass
class AgentRun:
    id: str
    owner: str
    request: AgentRunCreate
    run_root: Path
    status: str = "running"
    info: dict[str, Any] = field(default_factory=dict)
    events: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_EVENTS)
    )
    seq: int = 0
    run_dir: Path | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    changed: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    done: trio.Event = field(default_factory=trio.Event)

    def add(self, kind: str, **data: Any) -> None:
        self.seq += 1
        self.events.append({"seq": self.seq, "type": kind, **data})
        self.changed.unpark_all()

    def describe(self) -> AgentRunInfo:
        return AgentRunInfo(
            id=self.id,
            status=self.status,  # type: ignore[arg-type]
            owner=self.owner,
            task=self.request.task,
            run_dir=str(self.run_dir or self.run_root),
            **self.info,
        )

    async def follow(self, after: int = 0) -> Any:
        """Events with ``seq > after``, then new ones as they come, until the run ends."""
        sent = after
        while True:
            fresh = [event for event in list(self.events) if event["seq"] > sent]
            for event in fresh:
                sent = event["seq"]
                yield event
            if self.done.is_set() and not [e for e in self.events if e["seq"] > sent]:
                return
            if not fresh:
                with trio.move_on_after(15):
                    await self.changed.park()
                if not [e for e in self.events if e["seq"] > sent] and not self.done.is_set():
                    yield {"seq": sent, "type": "keepalive"}


class AgentRuns:
    """The runs of one server, executed in a nursery it owns."""

    def __init__(self, orch: Orchestrator, runs_dir: Path) -> None:
        self.orch = orch
        self.runs_dir = runs_dir
        self.runs: dict[str, AgentRun] = {}
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(self, owner: str, request: AgentRunCreate, target: MessagesTarget) -> AgentRun:
        if self._nursery is None:
            raise RuntimeError("agent runs are not being served")
        run_id = f"run_{secrets.token_hex(6)}"
        run = AgentRun(
            id=run_id, owner=owner, request=request, run_root=self.runs_dir / owner / run_id
        )
        self.runs[run.id] = run
        self._nursery.start_soon(self._execute, run, target)
        return run

    async def _execute(self, run: AgentRun, target: MessagesTarget) -> None:
        from orchestrator.agent.loop import AgentError, run_agent
        from orchestrator.tools.versions import DEFAULT_MODEL

        def on_text(text: str) -> None:
            run.add("text", text=text)

        def on_tool(event: ToolCallEvent) -> None:
            run.add(
                f"tool_{event.kind}",
                tool_use_id=event.tool_use_id,
                name=event.name,
                seconds=round(event.seconds, 4),
                is_error=event.is_error,
            )

        request = run.request
        run.add("started", task=request.task)
        try:
            with run.scope:
                client = target.client()
                async with client:
                    result = await run_agent(
                        self.orch,
                        request.task,
                        image=request.image,
                        model=request.model or DEFAULT_MODEL,
                        tools=request.tools,
                        max_turns=request.max_turns,
                        max_tokens=request.max_tokens,
                        token_budget=request.token_budget,
                        system=request.system,
                        thinking_budget=request.thinking_budget,
                        client=client,
                        run_root=run.run_root,
                        on_text=on_text,
                        on_tool=on_tool,
                    )
                run.status = "finished"
                run.run_dir = result.run_dir
                run.info = {
                    "session_id": result.session_id,
                    "stop_reason": result.stop_reason,
                    "turns": result.turns,
                    "input_tokens": result.input_tokens,
                    "output_tokens": result.output_tokens,
                    "cache_read_tokens": result.cache_read_tokens,
                    "cache_write_tokens": result.cache_write_tokens,
                    "cost_usd": result.cost_usd,
                    "compactions": result.compactions,
                    "final_text": result.final_text,
                }
            if run.scope.cancelled_caught:
                run.status = "cancelled"
        except AgentError as exc:
            run.status = "failed"
            run.run_dir = exc.run_dir
            run.info = {"error": str(exc)}
        except Exception as exc:
            log.exception("agent run failed", run_id=run.id)
            run.status = "failed"
            run.info = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            if run.run_dir is None:
                candidates = (
                    sorted(run.run_root.glob("*/transcript.jsonl"))
                    if (run.run_root.exists())
                    else []
                )
                run.run_dir = candidates[-1].parent if candidates else None
            run.add("end", status=run.status, **run.info)
            run.done.set()
            run.changed.unpark_all()
