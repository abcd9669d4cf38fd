"""Claude's ``computer`` tool on the session's X desktop, in all three published versions.

``computer_20241022``, ``computer_20250124`` and ``computer_20251124`` differ
in the actions they offer (scroll, mouse down/up, hold_key, wait and
triple_click arrived in 2025-01; zoom, behind ``enable_zoom``, in 2025-11)
and in what a click may carry (a coordinate and a modifier key in ``text``).
Input is checked per version before anything runs, so a bad call is an
``is_error`` result that names the problem and what is valid.

Coordinates are in the advertised screen (XGA/WXGA/FWXGA when the real one
is larger): they are checked against its bounds and scaled up; screenshots
are scaled down to it; ``zoom`` crops the *real* screen, so it shows detail
the scaled screenshot lost.  After an action the tool waits until the
screen settles (stops changing, capped) rather than a fixed 2 s, and
returns a screenshot, as the reference implementation does.

Must not: talk to the guest except through ``session.desktop``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.config import DesktopConfig
from orchestrator.desktop.desktop import Desktop, Step
from orchestrator.desktop.keys import KeyNameError, combo_steps, hold_steps, parse_combos
from orchestrator.desktop.scaling import Scaling, Size
from orchestrator.errors import GuestError, SessionError
from orchestrator.tools.base import Resource, Tool, ToolContext, ToolError, ToolOutput

__all__ = ["ACTIONS", "ComputerInput", "ComputerTool"]

_V1 = (
    "key",
    "type",
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "screenshot",
    "cursor_position",
)
_V2 = (*_V1, "left_mouse_down", "left_mouse_up", "scroll", "hold_key", "wait", "triple_click")
_V3 = (*_V2, "zoom")

ACTIONS: dict[str, tuple[str, ...]] = {
    "computer_20241022": _V1,
    "computer_20250124": _V2,
    "computer_20251124": _V3,
}
"""The actions of each version of the tool."""

_CLICKS = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
}
_FIELDS = ("coordinate", "start_coordinate", "text", "scroll_direction", "scroll_amount",
           "duration", "region")  # fmt: skip
_NEEDS: dict[str, tuple[str, ...]] = {
    "key": ("text",),
    "type": ("text",),
    "mouse_move": ("coordinate",),
    "left_click_drag": ("coordinate",),
    "scroll": ("scroll_direction", "scroll_amount"),
    "hold_key": ("text", "duration"),
    "wait": ("duration",),
    "zoom": ("region",),
}
_MAY: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(_CLICKS, ("coordinate", "text")),
    "left_click_drag": ("start_coordinate", "text"),
    "scroll": ("coordinate", "text"),
}
_WHAT = {
    "text": "the text to type"
    " (for key and hold_key: a key or combination such as Return or ctrl+c)",
    "coordinate": "[x, y] on the screen",
    "start_coordinate": "[x, y] where the drag starts",
    "scroll_direction": "up, down, left or right",
    "scroll_amount": "how many wheel clicks",
    "duration": "seconds",
    "region": "[x0, y0, x1, y1], the rectangle to zoom into",
}
_SHARED = ("screenshot", "cursor_position", "zoom")
MAX_DURATION = 100.0
MAX_SCROLL = 200


class ComputerInput(BaseModel):
    """The fields any version's actions take; which apply is checked per action and version."""

    model_config = ConfigDict(extra="forbid")

    action: str
    coordinate: list[int] | None = None
    start_coordinate: list[int] | None = None
    text: str | None = None
    scroll_direction: Literal["up", "down", "left", "right"] | None = None
    scroll_amount: int | None = Field(default=None, ge=0)
    duration: float | None = None
    region: list[int] | None = None


def _text(text: str | None) -> str:
    assert text is not None
    return text


class ComputerTool(Tool):
    name: ClassVar[str] = "computer"
    family: ClassVar[str] = "computer"
    types: ClassVar[tuple[str, ...]] = (
        "computer_20251124",
        "computer_20250124",
        "computer_20241022",
    )
    input_model: ClassVar[type[BaseModel]] = ComputerInput

    def __init__(self, config: DesktopConfig | None = None) -> None:
        self.config = config or DesktopConfig()

    # -- the tool parameter ------------------------------------------------------------

    def definition(self, tool_type: str, **options: Any) -> dict[str, Any]:
        """``display_width_px``/``height`` default to the configured screen, scaled."""
        default = Scaling.for_screen(
            Size(self.config.width, self.config.height), enabled=self.config.scaling
        ).advertised
        params: dict[str, Any] = {
            "type": tool_type,
            "name": self.name,
            "display_width_px": options.pop("display_width_px", None) or default.width,
            "display_height_px": options.pop("display_height_px", None) or default.height,
        }
        number = options.pop("display_number", None)
        if number is not None:
            params["display_number"] = number
        # Advertised and accepted from one setting: zoom offered must be zoom honoured.
        asked = options.pop("enable_zoom", None)
        if asked is not None and bool(asked) != self.config.enable_zoom:
            raise ValueError(
                f"enable_zoom={asked!r} differs from desktop.enable_zoom = "
                f"{str(self.config.enable_zoom).lower()}, which decides whether zoom is accepted; "
                "set it in the configuration instead"
            )
        if tool_type == "computer_20251124" and self.config.enable_zoom:
            params["enable_zoom"] = True
        params.update(options)
        return params

    # -- validation ----------------------------------------------------------------------

    def parse(self, tool_type: str, raw: dict[str, Any]) -> BaseModel:
        params = ComputerInput.model_validate(raw)
        actions = ACTIONS.get(tool_type, _V3)
        action = params.action
        if action not in actions:
            hint = ""
            if action == "zoom":
                hint = " (zoom needs computer_20251124 with enable_zoom)"
            elif action in _V3:
                hint = f" ({action} arrived in a later version of the tool)"
            raise ToolError(
                f"unknown action {action!r} for {tool_type}{hint}; the valid actions are: "
                + ", ".join(actions)
            )
        if action == "zoom" and not self.config.enable_zoom:
            raise ToolError(
                "zoom is not enabled: the tool was not advertised with enable_zoom "
                "(set desktop.enable_zoom = true to offer it); take a screenshot instead"
            )
        given = {name for name in _FIELDS if getattr(params, name) is not None}
        for name in _NEEDS.get(action, ()):
            if name not in given:
                raise ToolError(f"{name} is required for {action}: give {_WHAT[name]}")
        allowed = set(_NEEDS.get(action, ())) | set(_MAY.get(action, ()))
        if tool_type == "computer_20241022" and action in (*_CLICKS, "left_click_drag"):
            allowed.discard("text")  # modifier keys on clicks arrived in 2025-01
        for name in sorted(given - allowed):
            extra = ""
            if name == "coordinate" and action in ("left_mouse_down", "left_mouse_up"):
                extra = "; move the mouse there first with mouse_move"
            raise ToolError(f"{name} is not accepted for {action}{extra}")
        for name in ("coordinate", "start_coordinate"):
            value = getattr(params, name)
            if value is not None and (len(value) != 2 or min(value) < 0):
                raise ToolError(f"{name} must be [x, y], two non-negative integers; got {value}")
        if params.region is not None:
            x0, y0, x1, y1 = [*params.region, 0, 0, 0, 0][:4]
            if len(params.region) != 4 or min(params.region) < 0 or x1 <= x0 or y1 <= y0:
                raise ToolError(
                    "region must be [x0, y0, x1, y1] with 0 <= x0 < x1 and 0 <= y0 < y1; "
                    f"got {params.region}"
                )
        if params.duration is not None and not 0 <= params.duration <= MAX_DURATION:
            raise ToolError(f"duration must be between 0 and {MAX_DURATION:g} seconds")
        if params.scroll_amount is not None and params.scroll_amount > MAX_SCROLL:
            raise ToolError(f"scroll_amount must be at most {MAX_SCROLL}")
        if action in ("key", "hold_key") or (params.text and action in _MAY):
            try:
                parse_combos(_text(params.text))
            except KeyNameError as exc:
                raise ToolError(str(exc)) from None
        return params

    def resource(self, params: BaseModel) -> Resource:
        assert isinstance(params, ComputerInput)
        return Resource("display", shared=params.action in _SHARED)

    def timeout(self, params: BaseModel) -> float:
        assert isinstance(params, ComputerInput)
        seconds = 60.0 + self.config.settle_timeout_ms / 1000 + (params.duration or 0)
        if params.action == "type" and params.text:
            seconds += len(params.text) * (self.config.typing_delay_ms / 1000 + 0.002)
        return seconds

    # -- running -------------------------------------------------------------------------

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, ComputerInput)
        try:
            desktop = ctx.session.desktop
        except SessionError as exc:
            raise ToolError(str(exc)) from None
        try:
            return await self._run(ctx, desktop, params)
        except GuestError as exc:
            raise ToolError(f"{params.action} failed: {exc}") from None

    def _point(self, scaling: Scaling, value: list[int] | None, name: str) -> tuple[int, int]:
        assert value is not None
        x, y = value
        if not scaling.contains(x, y):
            raise ToolError(f"{name} {value} is outside the screen: {scaling.bounds_text()}")
        return scaling.to_screen(x, y)

    async def _run(self, ctx: ToolContext, desktop: Desktop, params: ComputerInput) -> ToolOutput:
        scaling = desktop.scaling
        action = params.action
        if action == "screenshot":
            shot = await desktop.screenshot(scaled=True)
            return self._image(ctx, shot.png)
        if action == "cursor_position":
            x, y = scaling.to_model(*await desktop.cursor())
            return ToolOutput.text(f"X={x},Y={y}")
        if action == "zoom":
            return await self._zoom(ctx, desktop, params)
        steps = self._steps(desktop, scaling, params)
        result = await desktop.act(steps, screenshot=True, settle=True)
        assert result.screenshot is not None
        output = ToolOutput()
        if result.settled is False:
            output.add_text(
                f"(the screen was still changing {self.config.settle_timeout_ms / 1000:g} s after "
                "the action; take another screenshot to see where it ends up)"
            )
        return self._image(ctx, result.screenshot.png, output)

    def _steps(self, desktop: Desktop, scaling: Scaling, params: ComputerInput) -> list[Step]:
        action = params.action
        if action == "key":
            return combo_steps(_text(params.text))
        if action == "type":
            return desktop.typing_steps(_text(params.text))
        if action == "mouse_move":
            x, y = self._point(scaling, params.coordinate, "coordinate")
            return [{"op": "move", "x": x, "y": y}]
        if action in _CLICKS:
            button, count = _CLICKS[action]
            x_y = (
                self._point(scaling, params.coordinate, "coordinate")
                if params.coordinate is not None
                else (None, None)
            )
            return desktop.click_steps(
                x_y[0],
                x_y[1],
                button=button,  # type: ignore[arg-type]
                count=count,
                modifiers=params.text,
            )
        if action == "left_click_drag":
            end = self._point(scaling, params.coordinate, "coordinate")
            start = (
                self._point(scaling, params.start_coordinate, "start_coordinate")
                if params.start_coordinate is not None
                else None
            )
            return desktop.drag_steps(start, end, modifiers=params.text)
        if action in ("left_mouse_down", "left_mouse_up"):
            return [{"op": "button", "button": 1, "down": action == "left_mouse_down"}]
        if action == "scroll":
            x_y = (
                self._point(scaling, params.coordinate, "coordinate")
                if params.coordinate is not None
                else (None, None)
            )
            assert params.scroll_direction is not None
            return desktop.scroll_steps(
                x_y[0],
                x_y[1],
                params.scroll_direction,
                int(params.scroll_amount or 0),
                modifiers=params.text,
            )
        if action == "hold_key":
            down, up = hold_steps(params.text)
            return [*down, {"op": "sleep", "ms": (params.duration or 0) * 1000}, *up]
        if action == "wait":
            return [{"op": "sleep", "ms": (params.duration or 0) * 1000}]
        raise ToolError(f"unknown action {action!r}")  # parse() lets none through

    async def _zoom(self, ctx: ToolContext, desktop: Desktop, params: ComputerInput) -> ToolOutput:
        scaling = desktop.scaling
        assert params.region is not None
        x0, y0, x1, y1 = params.region
        if x1 > scaling.advertised.width or y1 > scaling.advertised.height:
            raise ToolError(
                f"region {params.region} reaches outside the screen: x0..x1 must be within "
                f"0..{scaling.advertised.width} and y0..y1 within 0..{scaling.advertised.height}"
            )
        real = scaling.region_to_screen(x0, y0, x1, y1)
        factor = desktop.zoom_factor(real[2] - real[0], real[3] - real[1])
        shot = await desktop.capture_region(real, upscale=factor)
        note = (
            f"region {params.region} at full resolution: {real[2] - real[0]}x{real[3] - real[1]} "
            "screen pixels" + (f", each shown as {factor}x{factor}" if factor > 1 else "")
        )
        return self._image(ctx, shot.png, ToolOutput.text(note))

    @staticmethod
    def _image(ctx: ToolContext, png: bytes, output: ToolOutput | None = None) -> ToolOutput:
        output = output or ToolOutput()
        output.add_image(png)
        ctx.artifacts.append((f"{ctx.tool_use_id}.png", png))
        return output
