"""A typed async client of ``sbx serve`` for asyncio and trio programs alike.

``Client`` sends the API's operations over httpx (anyio underneath), answers
with the server's own models and raises the library's exception classes::

    async with Client("http://127.0.0.1:8765", token) as client:
        async with client.session(image="code-runner") as session:
            print((await session.exec("echo hi")).stdout)

For blocking code, ``SyncClient`` has the same methods, models and errors
without ``await``: a thin layer over ``SbxClient``'s blocking connection,
sending the same requests (built once, in
``orchestrator.api.client._operations``).
"""

from orchestrator.api.client import ApiClientError
from orchestrator.api.models import (
    AgentRunCreate,
    AgentRunInfo,
    FileEntry,
    FileListing,
    SessionCreate,
    SessionInfo,
    WorkflowRunResponse,
)
from orchestrator.client._client import Client, RemoteSession
from orchestrator.client._streams import EventStream, ExecOutputStream, StreamEvent
from orchestrator.client._sync import SyncClient, SyncExecOutput
from orchestrator.results import ExecResult, OutputChunk

__all__ = [
    "AgentRunCreate",
    "AgentRunInfo",
    "ApiClientError",
    "Client",
    "EventStream",
    "ExecOutputStream",
    "ExecResult",
    "FileEntry",
    "FileListing",
    "OutputChunk",
    "RemoteSession",
    "SessionCreate",
    "SessionInfo",
    "StreamEvent",
    "SyncClient",
    "SyncExecOutput",
    "WorkflowRunResponse",
]
