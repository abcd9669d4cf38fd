"""A session's X desktop: start it, look at it, type and click on it.

The guest runs the X server, the window manager and the screenshots; this
class is the session's handle on them.  Coordinates here are *real* screen
pixels; ``scaling`` converts to and from what Claude is shown (the
``computer`` tool does that).  Every call goes through the session's
channel with a deadline, and an X server that died is reported by
``status()`` and by every later call until ``restart()``.

Must not: know the ``computer`` tool's versions or validation (that is
``orchestrator.tools.computer``), or talk to Docker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from orchestrator.config import DesktopConfig
from orchestrator.desktop.keys import combo_steps, hold_steps
from orchestrator.desktop.scaling import Scaling, Size
from orchestrator.desktop.screen import ScreenSpec, parse_screen
from orchestrator.errors import ConfigError, SessionError
from orchestrator.guest_client import input_steps as step
from orchestrator.guest_client import requests as rq
from orchestrator.guest_client.client import GuestClient
from orchestrator.guest_client.input_steps import InputStep

__all__ = [
    "ActionResult",
    "Desktop",
    "Screenshot",
    "start_session_desktop",
]

log = structlog.get_logger("orchestrator.desktop")

Step = InputStep
Button = Literal["left", "middle", "right"]
BUTTONS: dict[str, int] = {"left": 1, "middle": 2, "right": 3}
SCROLL_BUTTONS: dict[str, int] = {"up": 4, "down": 5, "left": 6, "right": 7}


@dataclass(frozen=True)
class Screenshot:
    """A PNG of the screen (or of a part of it) and its size in pixels."""

    png: bytes
    width: int
    height: int

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_bytes(self.png)
        return target


@dataclass(frozen=True)
class ActionResult:
    """What an input action left behind: the pointer, and the settled screen if asked."""

    cursor: tuple[int, int]
    """Real screen coordinates of the pointer afterwards."""
    screenshot: Screenshot | None = None
    settled: bool | None = None
    """True if the screen stopped changing before the cap; ``None`` if not waited for."""
    changed: bool | None = None
    settle_ms: float | None = None
    ms: float | None = None


def _presses(
    x: int | None, y: int | None, number: int, count: int, gap_ms: float, modifiers: str | None
) -> list[Step]:
    """Move there (if given), hold the modifiers, press and release ``number`` ``count``
    times ``gap_ms`` apart, let the modifiers go: a click, a double click, a scroll."""
    down, up = hold_steps(modifiers)
    steps: list[Step] = []
    if x is not None and y is not None:
        steps.append(step.move(x, y))
    steps += down
    for index in range(count):
        if index:
            steps.append(step.sleep(gap_ms))
        steps += [step.button(number, down=True), step.button(number, down=False)]
    return steps + up


class Desktop:
    """The desktop of one session; made by the session when its image has one."""

    def __init__(self, client: GuestClient, config: DesktopConfig, spec: ScreenSpec) -> None:
        self._client = client
        self.config = config
        self.spec = spec
        self.info: dict[str, Any] = {}
        self.scaling = Scaling.for_screen(Size(spec.width, spec.height), enabled=config.scaling)
        self._novnc: dict[str, bytes] | None = None

    def __repr__(self) -> str:
        return f"<Desktop {self.spec} of {self._client.label}>"

    # -- life -------------------------------------------------------------------

    async def start(self, *, restart: bool = False) -> dict[str, Any]:
        """Start the X server (and window manager); returns once the server answers."""
        state = await self._client.desktop_start(
            rq.DesktopStartRequest(
                width=self.spec.width,
                height=self.spec.height,
                depth=self.spec.depth,
                display=self.config.display,
                wm=self.config.window_manager,
                background=self.config.background,
                timeout=self.config.start_timeout,
                restart=restart,
            )
        )
        self.info = state.as_dict()
        self.scaling = Scaling.for_screen(
            Size(state.width, state.height), enabled=self.config.scaling
        )
        log.info(
            "desktop ready",
            sandbox=self._client.label,
            screen=str(self.scaling.screen),
            advertised=str(self.scaling.advertised),
            seconds=state.seconds,
            wm_running=state.wm_running,
        )
        return self.info

    async def restart(self, screen: str | ScreenSpec | None = None) -> dict[str, Any]:
        """Replace the X server (after it died, or to change the screen size)."""
        if screen is not None:
            self.spec = parse_screen(screen) if isinstance(screen, str) else screen
        return await self.start(restart=True)

    async def stop(self) -> None:
        await self._client.desktop_stop()

    async def status(self) -> dict[str, Any]:
        """``state`` (running, dead, stopped), the display, its size, and ``death`` if it died."""
        return (await self._client.desktop_status()).as_dict()

    @property
    def display(self) -> str:
        return str(self.info.get("display", f":{self.config.display}"))

    def tool_options(self) -> dict[str, Any]:
        """The ``computer`` tool's parameters for this screen (the advertised size)."""
        return {
            "display_width_px": self.scaling.advertised.width,
            "display_height_px": self.scaling.advertised.height,
            "display_number": int(self.display.lstrip(":") or 0),
        }

    # -- looking ----------------------------------------------------------------

    def _settle(self) -> rq.SettleArgs:
        return rq.SettleArgs(
            quiet_ms=self.config.settle_quiet_ms, timeout_ms=self.config.settle_timeout_ms
        )

    def _shot_size(self, scaled: bool) -> list[int] | None:
        if scaled and self.scaling.active:
            return [self.scaling.advertised.width, self.scaling.advertised.height]
        return None

    async def screenshot(self, *, scaled: bool = True, settle: bool = False) -> Screenshot:
        """The whole screen; ``scaled`` gives the advertised size (what Claude sees)."""
        request = rq.DesktopScreenshotRequest(
            resample=self.config.resample,
            size=self._shot_size(scaled),
            settle=self._settle() if settle else None,
        )
        timeout = 30 + (self.config.settle_timeout_ms / 1000 if settle else 0)
        shot, png = await self._client.desktop_screenshot(request, timeout=timeout)
        return Screenshot(png, shot.width, shot.height)

    def zoom_factor(self, width: int, height: int) -> int:
        """How many times a ``width`` by ``height`` crop fits, enlarged, in the screenshot size."""
        if not self.config.zoom_upscale or width <= 0 or height <= 0:
            return 1
        budget = self.scaling.advertised
        return max(1, min(budget.width // width, budget.height // height))

    async def capture_region(
        self, region: tuple[int, int, int, int], *, upscale: int = 1
    ) -> Screenshot:
        """Real pixels ``x0, y0, x1, y1`` (right and bottom exclusive), at full resolution.

        ``upscale`` repeats every pixel as an nxn block, so nothing is interpolated.
        """
        x0, y0, x1, y1 = region
        if not (0 <= x0 < x1 <= self.scaling.screen.width):
            raise SessionError(
                f"region {list(region)} is not inside the {self.scaling.screen} screen"
            )
        if not (0 <= y0 < y1 <= self.scaling.screen.height):
            raise SessionError(
                f"region {list(region)} is not inside the {self.scaling.screen} screen"
            )
        request = rq.DesktopScreenshotRequest(region=[x0, y0, x1, y1], upscale=max(1, upscale))
        shot, png = await self._client.desktop_screenshot(request, timeout=30)
        return Screenshot(png, shot.width, shot.height)

    async def cursor(self) -> tuple[int, int]:
        """The pointer, in real screen coordinates."""
        pointer = await self._client.desktop_cursor()
        return pointer.x, pointer.y

    # -- acting -----------------------------------------------------------------

    async def act(
        self,
        steps: Sequence[Step],
        *,
        screenshot: bool = True,
        settle: bool = True,
        scaled: bool = True,
    ) -> ActionResult:
        """Run input steps, wait for the screen to settle, and (by default) take a screenshot.

        Steps are the guest's, made by ``guest_client.input_steps``: move, button,
        key, type and sleep.
        """
        request = rq.DesktopInputRequest(
            steps=list(steps),
            settle=self._settle() if settle else None,
            screenshot=rq.ShotArgs(resample=self.config.resample, size=self._shot_size(scaled))
            if screenshot
            else None,
        )
        done, png = await self._client.desktop_input(request, timeout=self._deadline(steps, settle))
        shot = Screenshot(png, done.width, done.height) if screenshot else None
        cursor = done.cursor if len(done.cursor) == 2 else [0, 0]
        return ActionResult(
            cursor=(cursor[0], cursor[1]),
            screenshot=shot,
            settled=done.settled,
            changed=done.changed,
            settle_ms=done.settle_ms,
            ms=done.ms,
        )

    def _deadline(self, steps: Sequence[Step], settle: bool) -> float:
        seconds = 30.0
        for one in steps:
            if one["op"] == "sleep":
                seconds += float(one["ms"]) / 1000
            elif one["op"] == "type":
                per_key = float(one["delay_ms"]) / 1000 + 0.002
                seconds += len(one["text"]) * per_key
        if settle:
            seconds += self.config.settle_timeout_ms / 1000
        return seconds

    # Conveniences in real screen coordinates ----------------------------------------

    def typing_steps(self, text: str) -> list[Step]:
        return [step.type_text(text, self.config.typing_delay_ms)]

    def click_steps(
        self,
        x: int | None,
        y: int | None,
        *,
        button: Button = "left",
        count: int = 1,
        modifiers: str | None = None,
    ) -> list[Step]:
        return _presses(x, y, BUTTONS[button], count, self.config.click_interval_ms, modifiers)

    def drag_steps(
        self,
        start: tuple[int, int] | None,
        end: tuple[int, int],
        *,
        modifiers: str | None = None,
    ) -> list[Step]:
        """Press at ``start`` (or where the pointer is), move in small steps, release at ``end``.

        Window managers and toolkits look for motion between press and
        release, so the pointer travels rather than jumps.
        """
        down, up = hold_steps(modifiers)
        steps: list[Step] = []
        if start is not None:
            steps.append(step.move(start[0], start[1]))
        steps += down
        steps.append(step.button(1, down=True))
        steps.append(step.sleep(30))
        if start is not None:
            # A first nudge of a pixel or two: window managers start a move on the
            # first motion and measure from there, so a big first step would be lost.
            distance = math.dist(start, end)
            if distance >= 4:
                nudge_x = start[0] + round(2 * (end[0] - start[0]) / distance)
                nudge_y = start[1] + round(2 * (end[1] - start[1]) / distance)
                steps.append(step.move(nudge_x, nudge_y))
                steps.append(step.sleep(20))
            count = max(4, min(20, math.ceil(distance / 40)))
            for index in range(1, count):
                x = round(start[0] + (end[0] - start[0]) * index / count)
                y = round(start[1] + (end[1] - start[1]) * index / count)
                steps.append(step.move(x, y))
                steps.append(step.sleep(10))
        steps.append(step.move(end[0], end[1]))
        steps.append(step.sleep(30))
        steps.append(step.button(1, down=False))
        return steps + up

    def scroll_steps(
        self,
        x: int | None,
        y: int | None,
        direction: Literal["up", "down", "left", "right"],
        amount: int,
        *,
        modifiers: str | None = None,
    ) -> list[Step]:
        return _presses(x, y, SCROLL_BUTTONS[direction], amount, 5, modifiers)

    async def click(
        self, x: int, y: int, *, button: Button = "left", count: int = 1
    ) -> ActionResult:
        return await self.act(self.click_steps(x, y, button=button, count=count))

    async def move(self, x: int, y: int) -> ActionResult:
        return await self.act([step.move(x, y)])

    async def type_text(self, text: str) -> ActionResult:
        return await self.act(self.typing_steps(text))

    async def key(self, combos: str) -> ActionResult:
        """xdotool ``key`` syntax: ``ctrl+a``, ``Return``, ``ctrl+a Delete``."""
        return await self.act(combo_steps(combos))

    async def scroll(
        self, x: int, y: int, direction: Literal["up", "down", "left", "right"], amount: int = 3
    ) -> ActionResult:
        return await self.act(self.scroll_steps(x, y, direction, amount))

    async def drag(self, start: tuple[int, int], end: tuple[int, int]) -> ActionResult:
        return await self.act(self.drag_steps(start, end))

    # -- the live view ----------------------------------------------------------------

    async def vnc_port(self, *, view_only: bool = True) -> int:
        """Start (once) the sandbox's VNC server for the live view; its loopback port."""
        return await self._client.desktop_vnc(
            rq.DesktopVncRequest(view_only=view_only, port=self.config.vnc_port)
        )

    async def novnc_files(self) -> dict[str, bytes]:
        """The noVNC client's modules from this sandbox's image, by path (cached)."""
        if self._novnc is None:
            self._novnc = await self._client.desktop_novnc()
        return self._novnc


async def start_session_desktop(
    client: GuestClient,
    settings: DesktopConfig,
    *,
    image: str,
    screen: str | None,
    wanted: bool | None,
) -> Desktop | None:
    """The desktop a new session gets: started when its image has one (or it asked for one).

    ``wanted`` is the session's ``desktop`` option (``None``: when the image has one).
    """
    available = bool(client.guest_info.get("desktop"))
    if wanted is False or (wanted is None and not available):
        if screen and not available:
            raise ConfigError(
                f"screen={screen!r} was asked for, but image {image} has no "
                "desktop (no X server); use image='desktop'"
            )
        return None
    if not available:
        raise ConfigError(
            f"a desktop was asked for, but image {image} has none (it needs Xvfb and "
            "DISPLAY set); use image='desktop'"
        )
    spec = (
        parse_screen(screen)
        if screen
        else ScreenSpec(settings.width, settings.height, settings.depth)
    )
    desktop = Desktop(client, settings, spec)
    await desktop.start()
    return desktop
