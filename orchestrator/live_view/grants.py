"""Who may watch which desktop: the live view's grants and its refusals.

Kept apart from ``service.LiveView`` (which issues grants and runs the server)
so that the routes (``routes``) can check a grant without importing
the view that mounts them.

Must not: import FastAPI or the view itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["ViewAccess", "ViewDenied", "ViewGrant"]


class ViewDenied(Exception):
    """A live view request without a valid grant (mapped to an HTTP status by the routes)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ViewGrant:
    session_id: str
    interactive: bool


class ViewAccess(Protocol):
    """What the routes ask of the live view: is this token good for this session?"""

    def check(self, session_id: str, token: str) -> tuple[Session, ViewGrant]:
        """The session a token grants and how; ``ViewDenied`` when it grants nothing."""
        ...
