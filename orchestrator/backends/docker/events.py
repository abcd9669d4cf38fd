"""The engine's word on our sandboxes, as it happens: died, ran out of memory, paused, removed.

A session learns within a second that its sandbox was killed, OOM-killed
as a whole, paused or removed from outside, instead of waiting for its
heartbeat.  One streaming ``GET /events`` per backend (filtered to
containers of this supervisor by label), read with trio's own sockets
through the same connection code as attach -- no thread -- and parsed by
h11 (the stream is chunked HTTP/1.1), one JSON object per event.

Must not: act on an event (the supervisor's sessions decide), or retry by
itself (the caller reconnects, with backoff).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from urllib.parse import quote

import h11
import trio

from orchestrator.backends.base import SandboxEvent
from orchestrator.backends.docker.attach import API_VERSION, connect_engine, docker_host
from orchestrator.errors import EngineError

__all__ = ["watch_events"]

_KINDS = {
    "die": "died",
    "oom": "oom",
    "pause": "paused",
    "destroy": "removed",
}
"""Engine actions sessions care about, by the engine's names."""


def _event(message: Mapping[str, object]) -> SandboxEvent | None:
    action = str(message.get("Action") or message.get("status") or "")
    kind = _KINDS.get(action)
    if kind is None:
        return None
    actor = message.get("Actor")
    attributes: Mapping[str, object] = {}
    if isinstance(actor, Mapping):
        raw = actor.get("Attributes")
        attributes = raw if isinstance(raw, Mapping) else {}
    sandbox_id = str(message.get("id") or (actor.get("ID") if isinstance(actor, Mapping) else ""))
    detail = ""
    if kind == "died":
        detail = f"exit code {attributes.get('exitCode', '?')}"
    return SandboxEvent(sandbox_id=sandbox_id, kind=kind, detail=detail)  # type: ignore[arg-type]


async def watch_events(
    host: str | None,
    labels: Mapping[str, str],
    on_event: Callable[[SandboxEvent], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Stream the engine's container events for ``labels`` to ``on_event`` until cancelled.

    ``task_status.started()`` once the engine has answered, so nothing that
    happens after that is missed.  Returns (or raises ``EngineError``) when
    the engine closes the stream.
    """
    filters = {"type": ["container"], "label": [f"{k}={v}" for k, v in labels.items()]}
    path = f"/{API_VERSION}/events?filters={quote(json.dumps(filters))}"
    raw, host_header = await connect_engine(docker_host(host))
    try:
        await _read_events(raw, host_header, path, on_event, task_status)
    except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        # A stream cut mid-chunk (an engine restart, a proxy dropping it) is a lost stream,
        # the caller's to reconnect, never a crash of whoever watches.
        raise EngineError(f"the engine's event stream broke: {exc}") from None
    finally:
        with trio.CancelScope(shield=True):
            await raw.aclose()


async def _read_events(
    raw: trio.abc.Stream,
    host_header: str,
    path: str,
    on_event: Callable[[SandboxEvent], None],
    task_status: trio.TaskStatus[None],
) -> None:
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=path, headers=[("Host", host_header)])
    await raw.send_all(connection.send(request) + (connection.send(h11.EndOfMessage()) or b""))
    pending = b""
    started = False
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await raw.receive_some(65536)
            connection.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Response):
            if event.status_code != 200:
                raise EngineError(f"the engine refused the event stream ({event.status_code})")
            task_status.started()
            started = True
        elif isinstance(event, h11.Data):
            pending += bytes(event.data)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                parsed = _event(message) if isinstance(message, dict) else None
                if parsed is not None:
                    on_event(parsed)
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            if not started:
                raise EngineError("the engine closed the event stream before answering")
            return
