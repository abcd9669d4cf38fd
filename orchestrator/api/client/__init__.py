"""The one client of sbx's HTTP API: for the command line, the bench, and scripts.

``SbxClient`` has a method per operation (sessions, exec whole or streamed,
tools, files, the desktop) over ``HttpConnection``, one keep-alive HTTP/1.1
connection on a blocking socket.  Both use the standard library only, so the
thin ``sbx run`` starts as fast as the interpreter, and a request costs its
socket calls and little more.  API errors are ``ApiClientError`` with the
server's message; ``api_error`` reads them from any transport's response.
Every operation's request is built once, in ``_operations``: the typed
anyio client (``orchestrator.client.Client``) sends the same calls over
httpx and reads errors with the same ``api_error``.

Exec streams are NDJSON events; ``orchestrator.exec_events`` turns them back
into bytes and an exit status.  The package must not import anything beyond
the standard library, ``orchestrator.errors`` and ``orchestrator.exec_events``.
"""

from orchestrator.api.client._client import (
    DEFAULT_URL,
    ApiClientError,
    JsonObject,
    SbxClient,
    api_error,
    unreachable,
)
from orchestrator.api.client._connection import HttpConnection, HttpResponse
from orchestrator.api.client._operations import ApiCall
from orchestrator.exec_events import event_bytes

__all__ = [
    "DEFAULT_URL",
    "ApiCall",
    "ApiClientError",
    "HttpConnection",
    "HttpResponse",
    "JsonObject",
    "SbxClient",
    "api_error",
    "event_bytes",
    "unreachable",
]
