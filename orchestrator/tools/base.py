"""What a tool is: schema, ordering resource, handler, and the shape of its result.

A tool translates one of Claude's ``tool_use`` blocks into calls on a
session (which reach the sandbox through the session's channel, never
around it) and the outcome into ``tool_result`` content.  It declares the
*resource* a call occupies -- the same shell, display, file or interpreter
-- so the router can run calls on different resources at once and calls on
the same one in order.  Handlers must not block the trio thread.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = [
    "Resource",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutput",
]


@dataclass(frozen=True, order=True)
class Resource:
    """What a call occupies inside its session.

    Calls with equal ``key`` run one at a time in batch order, except that
    ``shared`` (read-only) calls may overlap each other.
    """

    key: str
    shared: bool = False


class ToolError(Exception):
    """A failure to report to the model as an ``is_error`` result.

    The message is what the model reads: say what went wrong and what to do.
    """


@dataclass
class ToolOutput:
    """The content of one ``tool_result``: text and image blocks, and whether it failed."""

    content: list[dict[str, Any]] = field(default_factory=list)
    is_error: bool = False

    @classmethod
    def text(cls, text: str, *, is_error: bool = False) -> ToolOutput:
        return cls([{"type": "text", "text": text}], is_error=is_error)

    @classmethod
    def error(cls, message: str) -> ToolOutput:
        return cls.text(message, is_error=True)

    def add_text(self, text: str) -> ToolOutput:
        self.content.append({"type": "text", "text": text})
        return self

    def add_image(self, data: bytes, media_type: str = "image/png") -> ToolOutput:
        self.content.append(
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": media_type,
                    "data": base64.b64encode(data).decode("ascii"),
                },
            }
        )
        return self

    def to_block(self, tool_use_id: str) -> dict[str, Any]:
        """The ``tool_result`` block; errors carry a plain string, like the reference demo."""
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
        if self.is_error:
            texts = [part["text"] for part in self.content if part.get("type") == "text"]
            block["content"] = "\n".join(texts) or "the tool failed without a message"
            block["is_error"] = True
        else:
            # The Messages API refuses empty text blocks (400), and `cd /tmp` prints nothing.
            content = [
                part for part in self.content if part.get("type") != "text" or part.get("text")
            ]
            block["content"] = content or [{"type": "text", "text": "(no output)"}]
        return block


@dataclass
class ToolContext:
    """What a handler may use: its session, the call's id, and a place for artifacts."""

    session: Session
    tool_use_id: str
    tool_type: str
    options: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[str, bytes]] = field(default_factory=list)
    """Files a call produced for the caller (e.g. screenshots), as (name, bytes)."""


class Tool(ABC):
    """One Anthropic client tool family, in all its published versions."""

    name: ClassVar[str]
    """The ``name`` Claude calls it by."""
    family: ClassVar[str]
    types: ClassVar[tuple[str, ...]]
    """Every ``type`` string this tool implements, newest first."""
    input_model: ClassVar[type[BaseModel]]
    default_timeout: ClassVar[float] = 300.0
    kind: ClassVar[Literal["client"]] = "client"

    def definition(self, tool_type: str, **options: Any) -> dict[str, Any]:
        """The tool parameter advertised to the API for ``tool_type``."""
        return {"type": tool_type, "name": self.name, **options}

    def parse(self, tool_type: str, raw: dict[str, Any]) -> BaseModel:
        """Validate the model's input; ``pydantic.ValidationError`` becomes an error result."""
        return self.input_model.model_validate(raw)

    @abstractmethod
    def resource(self, params: BaseModel) -> Resource:
        """The resource a call with these parameters occupies."""

    def timeout(self, params: BaseModel) -> float:
        """The router's deadline for one call (the tool may enforce a tighter one itself)."""
        return self.default_timeout

    @abstractmethod
    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        """Do the call; raise ``ToolError`` for a result the model should see as an error."""
