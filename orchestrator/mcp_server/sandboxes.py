"""The sandboxes of one MCP client: opened for it, found by id, removed when it goes away.

An MCP client (one ``sbx mcp`` process on stdio, or one streamable-HTTP MCP
session) owns the sandboxes it creates; no other client can name them, and
``close_all`` removes every one of them when the client's connection ends.
It must not know the transport: the stdio runner and the HTTP endpoint call
``close_all`` from their own teardown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
import trio

from orchestrator.errors import SessionNotFound

if TYPE_CHECKING:
    from orchestrator.runtime import Orchestrator
    from orchestrator.session import Session

__all__ = ["ClientSandboxes"]

log = structlog.get_logger("orchestrator.mcp")

CLOSE_DEADLINE = 30.0
"""The longest ``close_all`` waits for the engine to remove a client's sandboxes."""


class ClientSandboxes:
    """The sessions one MCP client opened, by id, in the order it opened them."""

    def __init__(self, orch: Orchestrator, *, owner: str | None, client: str) -> None:
        self.orch = orch
        self.owner = owner
        """Whom the sandboxes are for (the HTTP token's owner; ``None`` on stdio)."""
        self.client = client
        """A name for logs and labels: ``stdio`` or the MCP session id."""
        self._sessions: dict[str, Session] = {}
        self.closed = False
        self._removed = trio.Event()

    async def create(self, options: dict[str, Any]) -> Session:
        """Open a sandbox for this client (``options`` as ``Orchestrator.open_session``)."""
        if self.closed:
            raise SessionNotFound(
                "this MCP connection is ending; its sandboxes are being removed. Reconnect to "
                "open new ones"
            )
        labels = dict(options.pop("labels", None) or {})
        labels.setdefault("mcp-client", self.client[:63])
        session = await self.orch.open_session(owner=self.owner, labels=labels, **options)
        if self.closed:  # the client left while its sandbox was starting
            await session.close("its MCP client disconnected")
            raise SessionNotFound("this MCP connection ended while the sandbox was starting")
        self._sessions[session.id] = session
        log.info("MCP client opened a sandbox", client=self.client, session_id=session.id)
        return session

    def get(self, session_id: str | None) -> Session:
        """The session named ``session_id``; with none named, this client's only one."""
        live = self.live()
        if session_id is None or session_id == "":
            if len(live) == 1:
                return live[0]
            if not live:
                raise SessionNotFound(
                    "this MCP client has no sandbox yet: call sandbox_create first, then pass "
                    "the sandbox_id it returns (or leave it out while you have just one)"
                )
            raise SessionNotFound(
                f"this MCP client has {len(live)} sandboxes ("
                + ", ".join(s.id for s in live)
                + "): pass sandbox_id to say which one"
            )
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            raise SessionNotFound(
                f"no sandbox {session_id!r} belongs to this MCP client; sandbox_list shows "
                "the ones it has, sandbox_create opens a new one"
            )
        return session

    def live(self) -> list[Session]:
        """The client's sessions not closed yet (crashed ones included: they say so)."""
        for session_id in [sid for sid, s in self._sessions.items() if s.state == "closed"]:
            del self._sessions[session_id]
        return [s for s in self._sessions.values() if not s.closed]

    async def close(self, session_id: str | None) -> str:
        """Close one sandbox of this client; its id."""
        session = self.get(session_id)
        await session.close("closed by its MCP client")
        self._sessions.pop(session.id, None)
        return session.id

    async def close_all(self, reason: str) -> int:
        """Remove every sandbox of this client, in parallel, whatever cancels the caller;
        a second call waits for the first one's removals.  How many this call removed."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + CLOSE_DEADLINE
            if self.closed:
                await self._removed.wait()
                return 0
            self.closed = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
            try:
                async with trio.open_nursery() as nursery:
                    for session in sessions:
                        nursery.start_soon(session.close, reason)
            finally:
                self._removed.set()
        if not sessions:
            return 0
        log.info(
            "MCP client gone; its sandboxes removed",
            client=self.client,
            sandboxes=len(sessions),
            reason=reason,
        )
        return len(sessions)
