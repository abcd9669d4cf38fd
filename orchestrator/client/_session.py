"""``RemoteSession``: one session of a ``Client``, with the local ``Session``'s method names.

Code written against ``orch.session(...)`` reads the same against
``client.session(...)``: ``exec``, ``exec_stream``, ``read_file``,
``write_file``, ``list_files``, ``remove``, ``run_tools``, ``view_url``.
It holds only the session's id and its client; it must not keep state of
its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from orchestrator.api.models import FileListing, SessionInfo
from orchestrator.results import ExecResult

if TYPE_CHECKING:
    from orchestrator.client._client import Client
    from orchestrator.client._streams import ExecOutputStream

__all__ = ["RemoteSession"]


class RemoteSession:
    """A session on a server, as ``Client.session`` or ``Client.attach`` gives it."""

    def __init__(self, client: Client, info: SessionInfo) -> None:
        self.client = client
        self.info = info
        self.id = info.id

    async def exec(
        self,
        command: str | list[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        max_output: int | None = None,
        user: str | None = None,
    ) -> ExecResult:
        return await self.client.exec(
            self.id,
            command,
            timeout=timeout,
            cwd=cwd,
            env=env,
            stdin=stdin,
            max_output=max_output,
            user=user,
        )

    def exec_stream(
        self, command: str | list[str], **options: Any
    ) -> AbstractAsyncContextManager[ExecOutputStream]:
        """``Client.exec_stream`` for this session (the same keyword options)."""
        return self.client.exec_stream(self.id, command, **options)

    async def read_file(self, path: str) -> bytes:
        return await self.client.read_file(self.id, path)

    async def write_file(self, path: str, data: bytes | str, *, mode: int | None = None) -> None:
        await self.client.write_file(self.id, path, data, mode=mode)

    async def list_files(self, path: str, *, depth: int = 1) -> FileListing:
        return await self.client.list_files(self.id, path, depth=depth)

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self.client.remove(self.id, path, recursive=recursive)

    async def run_tools(
        self, tool_uses: list[dict[str, Any]], tool_types: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        return await self.client.run_tools(self.id, tool_uses, tool_types)

    async def view_url(self, *, interactive: bool = False) -> str:
        return await self.client.view_url(self.id, interactive=interactive)

    async def screenshot(self, *, scaled: bool = False) -> bytes:
        return await self.client.screenshot(self.id, scaled=scaled)

    async def close(self) -> None:
        await self.client.delete_session(self.id)
