"""Running a batch of Claude's tool calls: concurrently where safe, in order where not.

Claude may answer one turn with several ``tool_use`` blocks.  The router
runs each as a task: calls on different resources (a shell beside a file
view beside a screenshot) overlap, calls on the same resource run in batch
order, read-only calls on the same resource may overlap.  Each call has a
deadline; a failing, invalid or timed-out call becomes an ``is_error``
result while the others complete; cancelling the batch cancels every call,
and the guest kills what they started.  Results come back in block order.

Why it cannot deadlock:

- Inside a batch a call waits only for *earlier* calls (an acyclic order),
  and it waits before it takes anything.
- Then it takes, in this fixed order, a global slot, a slot of its session,
  and one lock of its session -- never a second lock, never a lock of
  another session -- so a holder of a lock never waits for a slot or a lock.
- A cancel (the batch's scope, the call's deadline, the session closing)
  cannot strand any of them: each is taken the way trio's own ``Lock``
  is -- a pending cancel is honoured before anything is taken, the
  checkpoint after the take is shielded -- and given back by the ``async
  with`` that took it.  A call cancelled while queued leaves the queue;
  one granted the lock in the same instant it was cancelled gives it back.
  The randomized test in ``tests/unit/test_router.py`` cancels batches at
  random points under CPU load to keep this true.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pydantic
import structlog
import trio

from orchestrator.config import ToolsConfig
from orchestrator.errors import SbxError, SessionClosed, ToolBatchError
from orchestrator.observe import NullObserver, Observer, Outcome
from orchestrator.tools.base import Resource, Tool, ToolContext, ToolError, ToolOutput
from orchestrator.tools.registry import ToolRegistry
from orchestrator.tools.versions import TOOL_VERSIONS

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["ToolBatchError", "ToolCallEvent", "ToolRouter", "normalize_tool_uses"]

log = structlog.get_logger("orchestrator.router")


@dataclass(frozen=True)
class ToolCallEvent:
    """A call started or finished; for progress displays and event streams."""

    kind: Literal["started", "finished"]
    session_id: str
    tool_use_id: str
    name: str
    index: int
    seconds: float = 0.0
    is_error: bool = False
    result: dict[str, Any] | None = None


EventSink = Callable[[ToolCallEvent], None]


@dataclass
class _Call:
    index: int
    tool_use_id: str
    name: str
    raw_input: dict[str, Any]
    tool: Tool | None = None
    params: pydantic.BaseModel | None = None
    resource: Resource | None = None
    early: ToolOutput | None = None
    after: list[_Call] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    result: dict[str, Any] | None = None
    artifacts: list[tuple[str, bytes]] = field(default_factory=list)


def normalize_tool_uses(blocks: Sequence[Any]) -> list[dict[str, Any]]:
    """``tool_use`` blocks as dicts, from dicts or SDK objects; other block types dropped.

    Raises ``ToolBatchError`` for a batch that cannot be answered block by
    block: a ``tool_use`` without an id, or two with the same id.
    """
    uses: list[dict[str, Any]] = []
    for position, block in enumerate(blocks):
        data = block.model_dump() if hasattr(block, "model_dump") else block
        if not isinstance(data, Mapping):
            raise ToolBatchError(
                f"block {position} is a {type(block).__name__}, not a tool_use block (a dict or "
                "an anthropic SDK object)"
            )
        if data.get("type", "tool_use") != "tool_use":
            continue
        tool_use_id = data.get("id")
        if not isinstance(tool_use_id, str) or not tool_use_id:
            raise ToolBatchError(
                f"tool_use block {position} has no 'id'; every tool_use needs the id its "
                "tool_result must echo"
            )
        uses.append(dict(data))
    seen: dict[str, int] = {}
    for position, use in enumerate(uses):
        if use["id"] in seen:
            raise ToolBatchError(
                f"duplicate tool_use_id {use['id']!r} (tool_use blocks {seen[use['id']]} and "
                f"{position}); each call in a batch needs its own id"
            )
        seen[use["id"]] = position
    return uses


def _validation_message(name: str, exc: pydantic.ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "input"
        shown = err.get("input")
        got = f" (got {shown!r})" if err["type"] not in ("missing",) and shown is not None else ""
        problems.append(f"{where}: {err['msg']}{got}")
    return f"invalid input for the {name} tool: " + "; ".join(problems)


def _tool_type(tool: Tool, name: str, tool_types: Mapping[str, str]) -> str:
    """The version a call is for: as advertised under the name it was called by, else the
    newest version that goes by that name (``str_replace_editor`` is an older editor's)."""
    advertised = tool_types.get(name)
    if advertised is not None:
        return advertised
    if name != tool.name:
        for tool_type in tool.types:
            version = TOOL_VERSIONS.get(tool_type)
            if version is not None and version.name == name:
                return tool_type
    return tool_types.get(tool.name, tool.types[0])


class ToolRouter:
    def __init__(self, registry: ToolRegistry, config: ToolsConfig | None = None) -> None:
        config = config or ToolsConfig()
        self.registry = registry
        self.call_timeout = config.call_timeout
        self.per_session = config.max_concurrent_calls_per_session
        self.global_limiter = trio.CapacityLimiter(config.max_concurrent_calls)
        self.observer: Observer = NullObserver()

    def with_tools(self, tools: Iterable[Tool]) -> ToolRouter:
        """A router with ``tools`` added to this one's, for one caller's own calls (a
        workflow's steps).  It shares this router's limits -- the global slots, each
        session's slots and locks, the deadline -- and its observer."""
        router = copy.copy(self)
        router.registry = self.registry.extended(tools)
        return router

    # -- planning ------------------------------------------------------------------

    def _plan(self, uses: list[dict[str, Any]], tool_types: Mapping[str, str]) -> list[_Call]:
        calls: list[_Call] = []
        for index, use in enumerate(uses):
            raw = use.get("input")
            name = str(use.get("name", ""))
            call = _Call(index, use["id"], name, raw if isinstance(raw, dict) else {})
            calls.append(call)
            tool = self.registry.get(name)
            if tool is None:
                call.early = ToolOutput.error(
                    f"unknown tool {name!r}; the tools available here are: "
                    f"{', '.join(self.registry.names)}"
                )
                continue
            if not isinstance(raw, dict):
                call.early = ToolOutput.error(
                    f"the input of a {name} call must be a JSON object, got {type(raw).__name__}"
                )
                continue
            try:
                call.params = tool.parse(_tool_type(tool, name, tool_types), raw)
            except pydantic.ValidationError as exc:
                call.early = ToolOutput.error(_validation_message(name, exc))
                continue
            except ToolError as exc:
                call.early = ToolOutput.error(str(exc))
                continue
            call.tool = tool
            call.resource = tool.resource(call.params)
            for earlier in calls[:-1]:
                if earlier.resource is None or earlier.resource.key != call.resource.key:
                    continue
                if not (earlier.resource.shared and call.resource.shared):
                    call.after.append(earlier)
        return calls

    # -- running -------------------------------------------------------------------

    async def run(
        self,
        session: Session,
        blocks: Sequence[Any],
        *,
        tool_types: Mapping[str, str] | None = None,
        on_event: EventSink | None = None,
    ) -> list[dict[str, Any]]:
        """Run one batch in ``session``; ``tool_result`` blocks in block order."""
        results, _ = await self.run_with_artifacts(
            session, blocks, tool_types=tool_types, on_event=on_event
        )
        return results

    async def run_with_artifacts(
        self,
        session: Session,
        blocks: Sequence[Any],
        *,
        tool_types: Mapping[str, str] | None = None,
        on_event: EventSink | None = None,
    ) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]]]:
        """``run``, plus the files calls produced (screenshots) as ``(name, bytes)``."""
        calls = self._plan(normalize_tool_uses(blocks), tool_types or {})
        # A sandbox replaced since the last batch (restart_on_crash): the model is told.
        notice = session.take_restart_notice()
        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(self._run_call, session, call, tool_types or {}, on_event)
        results = [call.result or {} for call in calls]
        if notice is not None and results:
            first = results[0]
            content = first.get("content")
            blocks_before = (
                content
                if isinstance(content, list)
                else [{"type": "text", "text": content}]
                if content
                else []
            )
            first["content"] = [{"type": "text", "text": notice}, *blocks_before]
        artifacts = [item for call in calls for item in call.artifacts]
        return results, artifacts

    async def run_many(
        self,
        batches: Mapping[Session, Sequence[Any]],
        *,
        on_event: EventSink | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Batches in several sessions at once (an evaluation step); results by session id.

        Malformed batches are rejected before anything runs.
        """
        for blocks in batches.values():
            normalize_tool_uses(blocks)
        results: dict[str, list[dict[str, Any]]] = {}

        async def one(session: Session, blocks: Sequence[Any]) -> None:
            results[session.id] = await self.run(session, blocks, on_event=on_event)

        async with trio.open_nursery() as nursery:
            for session, blocks in batches.items():
                nursery.start_soon(one, session, blocks)
        return results

    async def _run_call(
        self,
        session: Session,
        call: _Call,
        tool_types: Mapping[str, str],
        on_event: EventSink | None,
    ) -> None:
        started = time.perf_counter()
        output: ToolOutput | None = call.early
        outcome: Outcome = "error" if output is not None else "ok"
        try:
            for earlier in call.after:
                await earlier.done.wait()
            if output is None:
                output = await self._execute(session, call, tool_types, on_event)
                outcome = "error" if output.is_error else "ok"
        finally:
            if output is None:  # cancelled: the batch is being torn down
                output = ToolOutput.error("the tool call was cancelled")
                outcome = "cancelled"
            call.result = output.to_block(call.tool_use_id)
            call.done.set()
            seconds = time.perf_counter() - started
            self.observer.tool_call(call.name if call.tool else "(invalid)", outcome, seconds)
            if on_event is not None:
                on_event(
                    ToolCallEvent(
                        "finished",
                        session.id,
                        call.tool_use_id,
                        call.name,
                        call.index,
                        seconds,
                        output.is_error,
                        call.result,
                    )
                )
            log.info(
                "tool call",
                session_id=session.id,
                tool=call.name,
                tool_use_id=call.tool_use_id,
                seconds=round(seconds, 4),
                is_error=output.is_error,
            )

    async def _execute(
        self,
        session: Session,
        call: _Call,
        tool_types: Mapping[str, str],
        on_event: EventSink | None,
    ) -> ToolOutput:
        assert call.tool is not None
        assert call.params is not None
        assert call.resource is not None
        tool, params, resource = call.tool, call.params, call.resource
        deadline = min(tool.timeout(params), self.call_timeout)
        ctx = ToolContext(
            session=session,
            tool_use_id=call.tool_use_id,
            tool_type=_tool_type(tool, call.name, tool_types),
        )
        with trio.move_on_after(deadline) as scope:
            try:
                async with (
                    self.global_limiter,
                    session.tool_slots(self.per_session),
                    session.locks.hold(resource.key, shared=resource.shared),
                ):
                    if on_event is not None:
                        on_event(
                            ToolCallEvent(
                                "started", session.id, call.tool_use_id, call.name, call.index
                            )
                        )
                    output = await tool.run(ctx, params)
                    call.artifacts = ctx.artifacts
                    return output
            except ToolError as exc:
                return ToolOutput.error(str(exc))
            except SessionClosed as exc:
                return ToolOutput.error(f"{exc}")
            except SbxError as exc:
                return ToolOutput.error(f"{call.name} failed: {exc}")
            except pydantic.ValidationError as exc:
                return ToolOutput.error(_validation_message(call.name, exc))
            except Exception as exc:
                log.exception("tool crashed", tool=call.name, session_id=session.id)
                return ToolOutput.error(
                    f"internal error in the {call.name} tool ({type(exc).__name__}: {exc}); "
                    "the call was not completed"
                )
        assert scope.cancelled_caught
        return ToolOutput.error(
            f"the {call.name} call did not finish within {deadline:g} s and was stopped"
        )
