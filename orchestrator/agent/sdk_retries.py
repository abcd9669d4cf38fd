"""The Messages API's retries, which the SDK makes, logged and counted as ours are.

The SDK retries 408/409/429/5xx answers and lost connections by itself
(``max_retries`` = ``agent.max_retries``) and tells nobody; every retry it
sends carries ``x-stainless-retry-count`` > 0.  An httpx event hook on the
client's requests sees that header, so each retry is logged with its reason
(the status of the answer that caused it, or a lost connection) and counted
in ``sbx_retries_total{operation="messages_api"}`` beside the engine's.

Must not: change what the SDK sends or when; it only watches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import anthropic
import structlog

__all__ = ["OPERATION", "retry_watching_http_client"]

log = structlog.get_logger("sbx.agent")

OPERATION = "messages_api"
RetrySink = Callable[[str, str], None]


class _Request(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...


def retry_watching_http_client(on_retry: RetrySink | None) -> anthropic.DefaultAsyncHttpxClient:
    """The SDK's own default HTTP client, with hooks that report each retry it sends."""
    last_status: list[int | None] = [None]

    async def on_response(response: _Response) -> None:
        last_status[0] = response.status_code

    async def on_request(request: _Request) -> None:
        taken = request.headers.get("x-stainless-retry-count", "0")
        if not taken.isdigit() or int(taken) == 0:
            last_status[0] = None
            return
        status = last_status[0]
        reason = f"http_{status}" if status is not None else "connection_error"
        last_status[0] = None
        log.warning("retrying", operation=OPERATION, attempt=int(taken) + 1, reason=reason)
        if on_retry is not None:
            on_retry(OPERATION, reason)

    return anthropic.DefaultAsyncHttpxClient(
        event_hooks={"request": [on_request], "response": [on_response]}
    )
