"""``POST /v1/workflows``: run a workflow for the caller; its result, or its step events streamed.

The workflow comes as JSON or YAML text and is checked before anything runs
(422 ``invalid_workflow`` naming the field, and the line for YAML).  Its
sessions are the caller's (their limits apply) and are removed when it
ends, or when a streaming client disconnects.  Over HTTP a workflow may not
read the server's files (``put: {from: ...}``) or environment (secrets come
in the request), and its agent steps send only what ``agent_access`` allows
-- decided for every step before the first one runs.  It must not run a
step itself: ``orchestrator.workflows`` does.
"""

from __future__ import annotations

from typing import Any

import trio
from fastapi import APIRouter, Request

from orchestrator.api.agent_access import MessagesTarget, messages_target
from orchestrator.api.auth import Principal
from orchestrator.api.dependencies import ApiStateDep, Caller
from orchestrator.api.errors import ApiError
from orchestrator.api.models import WorkflowRunRequest, WorkflowRunResponse
from orchestrator.api.stream_events import stream_responses
from orchestrator.api.streaming import Emit
from orchestrator.config import AgentConfig
from orchestrator.workflows.loading import load_workflow, load_workflow_text
from orchestrator.workflows.model import Workflow
from orchestrator.workflows.results import WorkflowEvent
from orchestrator.workflows.runner import (
    WorkflowError,
    resolve_secrets,
    resolve_vars,
    run_workflow,
)
from orchestrator.workflows.source import LoadError

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["workflows"])

EVENT_BUFFER = 64


def _checked(body: WorkflowRunRequest) -> Workflow:
    """The request's workflow, loaded and checked; 422 ``invalid_workflow`` otherwise."""
    try:
        if isinstance(body.workflow, str):
            workflow = load_workflow_text(body.workflow)
        else:
            workflow = load_workflow(body.workflow)
        resolve_vars(workflow, body.vars)
        resolve_secrets(workflow, body.secrets, None)
    except LoadError as exc:
        first = exc.first
        raise ApiError(422, "invalid_workflow", str(exc), f"workflow.{first.field}") from None
    except WorkflowError as exc:
        raise ApiError(422, "invalid_workflow", str(exc)) from None
    for index, step in enumerate(workflow.steps):
        if step.put is not None and step.put.from_ is not None:
            raise ApiError(
                422,
                "invalid_workflow",
                f"steps[{index}].put.from reads the server's files, which a workflow sent over "
                "HTTP may not; send the text as put.content",
                f"workflow.steps[{index}].put.from",
            )
    return workflow


def _agent_clients(
    workflow: Workflow, who: Principal, config: AgentConfig
) -> dict[str | None, MessagesTarget]:
    """Where each agent step may send which key (403 before anything runs)."""
    targets: dict[str | None, MessagesTarget] = {}
    for step in workflow.steps:
        if step.agent is not None and step.agent.base_url not in targets:
            targets[step.agent.base_url] = messages_target(config, who, step.agent.base_url)
    return targets


@router.post(
    "/workflows",
    response_model=WorkflowRunResponse,
    responses=stream_responses("WorkflowStreamEvent"),
)
async def run_workflow_route(
    body: WorkflowRunRequest, who: Caller, request: Request, state: ApiStateDep
) -> Any:
    """Run a workflow in sandboxes of the caller's; with a streaming ``Accept``, each step's
    ``step_started``, ``step_retry`` and ``step_finished`` event, then ``workflow_finished``."""
    workflow = _checked(body)
    targets = _agent_clients(workflow, who, state.config.agent)
    options: dict[str, Any] = {
        "vars": body.vars,
        "secrets": body.secrets,
        "owner": who.owner,
        "environ": None,
        "allow_local_files": False,
        "run_root": state.config.api.runs_dir / who.owner / "workflows",
        "agent_client": (lambda base_url: targets[base_url].client()) if targets else None,
    }

    async def produce(emit: Emit) -> None:
        sender, receiver = trio.open_memory_channel[WorkflowEvent](EVENT_BUFFER)
        results: list[dict[str, Any]] = []

        async def run() -> None:
            async with sender:
                result = await run_workflow(state.orch, workflow, on_event=sender.send, **options)
                results.append(result.to_json())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            async with receiver:
                async for event in receiver:
                    await emit(event.kind, event.to_json())
        await emit("workflow_finished", results[0], final=True)

    stream = state.stream(request, produce)
    if stream is not None:
        return stream
    result = await run_workflow(state.orch, workflow, **options)
    return result.to_json()
