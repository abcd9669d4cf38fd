"""The swarm's word on our sandboxes: a task that stopped, a node that went down.

Swarm has no per-container event stream across nodes, so the manager's
task list is polled (twice a second, one call): a task of one of our
services that was running and now is not is reported ``died`` with the
task's own message, and so is every running task on a node the manager
sees ``down``.  A service that disappears is reported ``removed``.

Must not: act on an event (the sessions decide).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from orchestrator.backends.base import EventSink, SandboxEvent
from orchestrator.backends.swarm.nodes import SwarmNodes

__all__ = ["POLL_INTERVAL", "watch_tasks"]

POLL_INTERVAL = 0.5


async def watch_tasks(
    nodes: SwarmNodes,
    labels: Mapping[str, str],
    on_event: EventSink,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Report what happens to services carrying ``labels`` until cancelled."""
    manager = nodes.manager
    api = (await manager.connected()).api
    filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
    running: dict[str, str] = {}
    """Service id -> node id, for services whose task we saw running."""
    started = False
    while True:
        services: list[dict[str, Any]] = await manager.call(
            "watching sandboxes", api.services, filters=filters
        )
        ours = {str(row["ID"]) for row in services}
        tasks: list[dict[str, Any]] = await manager.call("watching tasks", api.tasks)
        node_rows: list[dict[str, Any]] = await manager.call("watching nodes", api.nodes)
        down = {
            str(row.get("ID")): str((row.get("Status") or {}).get("Addr", ""))
            for row in node_rows
            if (row.get("Status") or {}).get("State") not in ("ready", None)
        }
        now_running: dict[str, str] = {}
        ended: dict[str, str] = {}
        for task in tasks:
            service = str(task.get("ServiceID", ""))
            if service not in ours:
                continue
            status = task.get("Status") or {}
            state = str(status.get("State", ""))
            node = str(task.get("NodeID", ""))
            if state == "running" and node not in down:
                now_running[service] = node
            elif state == "running":
                ended[service] = f"its node {down[node]} is down"
            elif state in ("complete", "failed", "shutdown", "rejected", "orphaned"):
                exit_code = (status.get("ContainerStatus") or {}).get("ExitCode", "?")
                message = status.get("Err") or status.get("Message") or state
                ended.setdefault(service, f"exit code {exit_code}, task {state}: {message}")
        for service, node in running.items():
            if service in now_running:
                continue
            if service not in ours:
                on_event(SandboxEvent(sandbox_id=service, kind="removed"))
            else:
                detail = ended.get(service, "its task stopped")
                if node in down:
                    detail = f"its node {down[node]} is down"
                on_event(SandboxEvent(sandbox_id=service, kind="died", detail=detail))
        running = now_running
        if not started:
            task_status.started()
            started = True
        await trio.sleep(POLL_INTERVAL)
