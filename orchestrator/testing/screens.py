"""Screens without a desktop: synthetic screenshots and a ``screen`` tool that returns them.

For runs of many screenshot turns where no X server is at hand (unit tests
on the fake backend, ``sbx bench --agent --fake-screens``): ``synthetic_screen``
draws a desktop-like PNG -- a flat background, a window, lines of "text" --
that differs from step to step and weighs what a real screenshot of a quiet
desktop does (a few tens of kilobytes).  ``ScreenTool`` is a custom tool that
answers each call with a line of text and such a screenshot, never touching
the sandbox.  ``screenshot_script`` is the script of such a run.

Must not: be used as a computer tool (it takes no actions); nothing here is
for real runs.
"""

from __future__ import annotations

import random
import struct
import zlib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from orchestrator.testing.api_script import Reply, ToolUseReply
from orchestrator.tools.base import Resource, Tool, ToolContext, ToolOutput

__all__ = ["ScreenInput", "ScreenTool", "screenshot_script", "synthetic_screen"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def synthetic_screen(step: int, width: int = 1024, height: int = 768) -> bytes:
    """A PNG of ``width`` x ``height`` that is the same for the same ``step``."""
    rng = random.Random(step)
    background = bytes((43, 76, 111)) * width
    left = rng.randrange(0, width // 2)
    right = min(width, left + width // 2)
    top = rng.randrange(0, height // 2)
    bottom = min(height, top + height // 2)
    window = background[: left * 3] + b"\xf0" * ((right - left) * 3) + background[right * 3 :]
    rows = []
    for y in range(height):
        if top <= y < bottom:
            if (y - top) % 12 == 4 and y < bottom - 12:
                span = min(right - left - 16, 320)
                text = rng.randbytes(span * 3)
                row = window[: (left + 8) * 3] + text + window[(left + 8 + span) * 3 :]
            else:
                row = window
        else:
            row = background
        rows.append(b"\x00" + row)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + _chunk(b"IEND", b"")
    )


class ScreenInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step: int = 0
    """Which screen to draw; the same step draws the same picture."""


class ScreenTool(Tool):
    """``screen``: "look at the screen", answered with a synthetic screenshot."""

    name: ClassVar[str] = "screen"
    family: ClassVar[str] = "screen"
    types: ClassVar[tuple[str, ...]] = ("custom",)
    input_model: ClassVar[type[BaseModel]] = ScreenInput
    default_timeout: ClassVar[float] = 30.0

    def __init__(self, width: int = 1024, height: int = 768) -> None:
        self.width = width
        self.height = height

    def definition(self, tool_type: str, **options: Any) -> dict[str, Any]:
        return {
            "type": "custom",
            "name": self.name,
            "description": "Take a screenshot of the screen.",
            "input_schema": {
                "type": "object",
                "properties": {"step": {"type": "integer", "description": "The step number."}},
            },
            **options,
        }

    def resource(self, params: BaseModel) -> Resource:
        return Resource("screen")

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, ScreenInput)
        png = synthetic_screen(params.step, self.width, self.height)
        return ToolOutput.text(f"screen at step {params.step}").add_image(png)


def screenshot_script(turns: int, tool: str = "screen") -> list[Reply]:
    """A scripted run of ``turns`` turns, each a line of text and one call that returns a
    screenshot (``screen`` steps, or ``computer`` mouse moves), then a final answer."""
    replies = []
    for step in range(1, turns + 1):
        tool_input: dict[str, Any] = {"step": step}
        if tool == "computer":
            x, y = 10 + (37 * step) % 1000, 10 + (53 * step) % 740
            tool_input = {"action": "mouse_move", "coordinate": [x, y]}
        replies.append(
            Reply(
                text=f"Step {step}: I look at the screen and decide what to do next.",
                tool_uses=[ToolUseReply(id=f"toolu_{step:04d}", name=tool, input=tool_input)],
            )
        )
    replies.append(Reply(text=f"Done: {turns} steps, each checked on the screen."))
    return replies
