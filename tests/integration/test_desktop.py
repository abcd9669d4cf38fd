"""Computer use on real desktop sandboxes: every action's effect, seen in the pixels.

Each test opens sbx-desktop sessions on the real engine, drives them through
the ``computer`` tool (the router, as Claude's calls arrive) or the
``Desktop`` API, and checks what happened on the screen or in the sandbox.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import trio
from PIL import Image

from orchestrator import Orchestrator, Session
from orchestrator.agent import run_agent
from orchestrator.testing.messages_api import MessagesAPIServer, Reply, ToolUseReply
from orchestrator.tools.computer import ACTIONS

from .conftest import containers_of_session

V1, V2, V3 = "computer_20241022", "computer_20250124", "computer_20251124"
XTERM = ["xterm", "-fa", "DejaVu Sans Mono", "-fs", "11", "+sb"]
"""An xterm with an Xft font, so every character typed has a glyph."""

# -- helpers ----------------------------------------------------------------------------


def _image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


async def _computer(
    session: Session, tool_input: dict[str, Any], version: str = V3
) -> tuple[dict[str, Any], Image.Image | None]:
    """One computer call through the router; the result block and its image, if any."""
    [result] = await session.run_tools(
        [{"type": "tool_use", "id": "toolu_t", "name": "computer", "input": tool_input}],
        tool_types={"computer": version},
    )
    image = None
    if isinstance(result["content"], list):
        for block in result["content"]:
            if block["type"] == "image":
                image = _image(base64.b64decode(block["source"]["data"]))
    return result, image


async def _shell(session: Session, command: str) -> str:
    result = await session.exec(command, timeout=30)
    assert result.exit_code == 0, result.stderr_text
    return result.stdout_text


async def _geometry(session: Session, title: str) -> dict[str, int] | None:
    """Root position and size of the visible window called ``title``, if there is one.

    (xwininfo, because xdotool's position is off by the window manager's frame.)
    """
    found = await session.exec(
        f"w=$(xdotool search --onlyvisible --name '^{title}$' | head -1); "
        '[ -n "$w" ] && xwininfo -id "$w"',
        timeout=30,
    )
    fields: dict[str, int] = {}
    for line in found.stdout_text.splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height"):
            fields[key.split()[-1].upper()] = int(value)
    return fields if len(fields) == 4 else None


async def _window(session: Session, title: str, argv: list[str]) -> dict[str, int]:
    """Start an X client in the background and wait for its window; its geometry."""
    await _shell(
        session,
        f"setsid {shlex.join(argv)} </dev/null >/tmp/{title}.log 2>&1 &",
    )
    for _ in range(200):
        geometry = await _geometry(session, title)
        if geometry is not None:
            await trio.sleep(0.3)  # let it draw its first frame
            return geometry
        await trio.sleep(0.05)
    raise AssertionError(
        f"window {title} did not appear: {await session.read_file(f'/tmp/{title}.log')!r}"
    )


def _close_to(pixel: tuple[int, ...], color: tuple[int, int, int], slack: int = 8) -> bool:
    return all(abs(int(a) - b) <= slack for a, b in zip(pixel, color, strict=False))


# -- typing, clicking, dragging, scrolling -----------------------------------------------


async def test_typing_into_an_xterm_shows_in_the_pixels_and_keeps_unicode(
    orch: Orchestrator,
) -> None:
    async with orch.session(image="desktop") as session:
        await _window(session, "typing", [*XTERM, "-T", "typing", "-geometry", "70x14+40+40"])
        await _computer(session, {"action": "left_click", "coordinate": [200, 120]})
        command = "printf '\\033]11;#00ff00\\007'; echo 'héllo wörld € 你好' > /tmp/typed.txt\n"
        result, image = await _computer(session, {"action": "type", "text": command})
        assert result.get("is_error") is not True, result
        assert image is not None
        assert image.size == (1024, 768)
        # The typed command turned the xterm green: its effect is in the screenshot.
        assert _close_to(image.getpixel((300, 200)), (0, 255, 0))
        assert _close_to(image.getpixel((900, 600)), (0x2B, 0x4C, 0x6F))  # the desktop
        typed = await session.read_file("/tmp/typed.txt")
        assert typed.decode() == "héllo wörld € 你好\n"


async def test_key_combinations_reach_the_application(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        await _window(session, "keys", [*XTERM, "-T", "keys", "-geometry", "70x14+40+40"])
        await _computer(session, {"action": "left_click", "coordinate": [200, 120]})
        await _computer(session, {"action": "type", "text": "echo one two"})
        # ctrl+w deletes the last word in bash; Return (written as Claude does) runs it.
        await _computer(session, {"action": "key", "text": "ctrl+w"})
        await _computer(session, {"action": "type", "text": "> /tmp/keys.txt"})
        result, _ = await _computer(session, {"action": "key", "text": "enter"})
        assert result.get("is_error") is not True
        assert (await session.read_file("/tmp/keys.txt")).decode() == "one\n"


async def test_a_click_moves_focus_between_two_windows(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        left = await _window(session, "left", [*XTERM, "-T", "left", "-geometry", "40x10+20+40"])
        right = await _window(
            session, "right", [*XTERM, "-T", "right", "-geometry", "40x10+540+40"]
        )
        for title, window in (("right", right), ("left", left), ("right", right)):
            x, y = window["X"] + 60, window["Y"] + 60
            result, _ = await _computer(session, {"action": "left_click", "coordinate": [x, y]})
            assert result.get("is_error") is not True
            active = await _shell(session, "xdotool getactivewindow getwindowname")
            assert active.strip() == title


async def test_dragging_a_title_bar_moves_the_window(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        before = await _window(session, "drag", [*XTERM, "-T", "drag", "-geometry", "40x8+100+100"])
        start = [before["X"] + 80, before["Y"] - 8]  # on the title bar, above the client area
        end = [start[0] + 200, start[1] + 120]
        result, _ = await _computer(
            session, {"action": "left_click_drag", "start_coordinate": start, "coordinate": end}
        )
        assert result.get("is_error") is not True
        moved = await _geometry(session, "drag")
        assert moved is not None
        assert abs(moved["X"] - before["X"] - 200) <= 3
        assert abs(moved["Y"] - before["Y"] - 120) <= 3


async def test_scrolling_a_scrollable_window_changes_its_content(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        window = await _window(
            session,
            "scroll",
            [*XTERM, "-T", "scroll", "-sl", "1000", "-geometry", "60x20+40+40", "-e",
             "bash", "-c", "seq 1 400; exec bash"],
        )  # fmt: skip
        box = (window["X"], window["Y"], window["X"] + window["WIDTH"], window["Y"] + 200)
        middle = [window["X"] + 100, window["Y"] + 100]
        # The pointer is part of the screen: put it in place before the first look.
        _, before = await _computer(session, {"action": "mouse_move", "coordinate": middle})
        result, after = await _computer(
            session,
            {
                "action": "scroll",
                "coordinate": middle,
                "scroll_direction": "up",
                "scroll_amount": 5,
            },
        )
        assert result.get("is_error") is not True
        assert before is not None
        assert after is not None
        assert before.crop(box).tobytes() != after.crop(box).tobytes()
        _, back = await _computer(
            session,
            {
                "action": "scroll",
                "coordinate": middle,
                "scroll_direction": "down",
                "scroll_amount": 5,
            },
        )
        assert back is not None
        assert back.crop(box).tobytes() == before.crop(box).tobytes()


async def test_mouse_buttons_and_held_keys(orch: Orchestrator) -> None:
    """left_mouse_down/up, right and middle clicks, hold_key and wait all run and settle."""
    async with orch.session(image="desktop") as session:
        for tool_input in (
            {"action": "mouse_move", "coordinate": [500, 400]},
            {"action": "left_mouse_down"},
            {"action": "mouse_move", "coordinate": [520, 420]},
            {"action": "left_mouse_up"},
            {"action": "middle_click", "coordinate": [500, 400]},
            {"action": "double_click", "coordinate": [500, 400]},
            {"action": "triple_click", "coordinate": [500, 400]},
            {"action": "left_click", "coordinate": [500, 400], "text": "shift"},
            {"action": "hold_key", "text": "shift", "duration": 0.2},
            {"action": "wait", "duration": 0.1},
        ):
            result, image = await _computer(session, tool_input)
            assert result.get("is_error") is not True, (tool_input, result)
            assert image is not None
        # A right click on the desktop opens the window manager's menu: the screen changes.
        _, before = await _computer(session, {"action": "screenshot"})
        _, menu = await _computer(session, {"action": "right_click", "coordinate": [600, 300]})
        assert before is not None
        assert menu is not None
        assert before.tobytes() != menu.tobytes()


# -- scaling and zoom ---------------------------------------------------------------------------


async def test_cursor_position_round_trips_through_scaling_at_1920x1080(
    orch: Orchestrator,
) -> None:
    async with orch.session(image="desktop", screen="1920x1080") as session:
        desktop = session.desktop
        assert desktop.tool_options()["display_width_px"] == 1366
        assert desktop.tool_options()["display_height_px"] == 768
        for x, y in ((0, 0), (683, 384), (1365, 767), (17, 401), (1000, 3)):
            result, image = await _computer(session, {"action": "mouse_move", "coordinate": [x, y]})
            assert image is not None
            assert image.size == (1366, 768)  # screenshots come at the advertised size
            real = await desktop.cursor()
            assert real == desktop.scaling.to_screen(x, y)
            result, _ = await _computer(session, {"action": "cursor_position"})
            assert result["content"][0]["text"] == f"X={x},Y={y}"
        assert await desktop.cursor() == (1406, 4)  # 1000*1920/1366, 3*1080/768 rounded
        result, _ = await _computer(session, {"action": "left_click", "coordinate": [1366, 10]})
        assert result["is_error"] is True
        assert "0..1365" in result["content"]
        assert "0..767" in result["content"]


_PATTERN_CLIENT = r"""
import sys, time
sys.path.append("/usr/lib/python3/dist-packages")
from Xlib import X, display
x0, y0, w, h = (int(v) for v in sys.argv[1:5])
d = display.Display()
screen = d.screen()
win = screen.root.create_window(x0, y0, w, h, 0, screen.root_depth, X.InputOutput,
                                X.CopyFromParent, override_redirect=True,
                                background_pixel=screen.black_pixel)
win.map()
gc = win.create_gc()
data = bytearray()
for y in range(h):
    for x in range(w):
        r, g, b = (x * 7) % 256, (y * 11) % 256, (x * y) % 256
        data += bytes((b, g, r, 0))
d.sync()
time.sleep(0.2)
win.put_image(gc, 0, 0, w, h, X.ZPixmap, 24, 0, bytes(data))
d.sync()
print("drawn", flush=True)
time.sleep(3600)
"""


def _pattern(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            ((x * 7) % 256, (y * 11) % 256, (x * y) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    return image


async def _draw_pattern(session: Session, x: int, y: int, w: int, h: int) -> None:
    await session.write_file("/tmp/pattern.py", _PATTERN_CLIENT)
    await _shell(session, f"setsid python3 /tmp/pattern.py {x} {y} {w} {h} >/tmp/p.log 2>&1 &")
    await _shell(
        session, "for i in $(seq 100); do grep -q drawn /tmp/p.log && exit 0; sleep 0.05; done"
    )
    await session.desktop.move(5, 5)  # the pointer is drawn into the framebuffer: keep it away


async def test_zoom_returns_exactly_the_region_at_full_resolution(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        await _draw_pattern(session, 300, 200, 64, 48)
        pattern = _pattern(64, 48)
        region = await session.desktop.capture_region((300, 200, 364, 248))
        assert (region.width, region.height) == (64, 48)
        assert _image(region.png).tobytes() == pattern.tobytes()
        result, image = await _computer(session, {"action": "zoom", "region": [300, 200, 364, 248]})
        assert result.get("is_error") is not True
        assert image is not None
        assert image.size == (1024, 768)  # 16 times, whole pixels, to fill the screenshot size
        assert "64x48 screen pixels, each shown as 16x16" in result["content"][0]["text"]
        assert image.resize((64, 48), Image.Resampling.NEAREST).tobytes() == pattern.tobytes()


async def test_zoom_on_a_scaled_screen_crops_the_real_pixels(orch: Orchestrator) -> None:
    """The reference demo crops its already-scaled screenshot; we crop the real screen."""
    async with orch.session(image="desktop", screen="1920x1080") as session:
        await _draw_pattern(session, 600, 400, 64, 48)
        desktop = session.desktop
        advertised = [427, 284, 473, 319]
        real = desktop.scaling.region_to_screen(*advertised)
        assert real[0] <= 600
        assert real[1] <= 400
        assert real[2] >= 664
        assert real[3] >= 448
        result, image = await _computer(session, {"action": "zoom", "region": advertised})
        assert result.get("is_error") is not True
        assert image is not None
        factor = image.width // (real[2] - real[0])
        assert factor >= 2
        native = image.resize((real[2] - real[0], real[3] - real[1]), Image.Resampling.NEAREST)
        inner = native.crop((600 - real[0], 400 - real[1], 664 - real[0], 448 - real[1]))
        assert inner.tobytes() == _pattern(64, 48).tobytes()  # every real pixel, none blended
        full = _image((await desktop.screenshot(scaled=False)).png)
        assert full.size == (1920, 1080)
        assert full.crop(real).tobytes() == native.tobytes()


# -- many desktops, a dead X server, bad input ----------------------------------------------


async def test_five_desktops_at_once_each_with_its_own_screen(
    orch: Orchestrator, docker_client: docker.DockerClient
) -> None:
    colors = ["#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ff00ff"]
    sessions: list[Session] = []

    async def one(color: str) -> None:
        session = await orch.open_session(image="desktop")
        sessions.append(session)
        await _shell(session, f"xsetroot -solid '{color}'")
        shot = _image((await session.desktop.screenshot(settle=True)).png)
        expected = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
        assert _close_to(shot.getpixel((500, 300)), expected)  # type: ignore[arg-type]

    try:
        async with trio.open_nursery() as nursery:
            for color in colors:
                nursery.start_soon(one, color)
        assert len({s.sandbox_id for s in sessions}) == 5
        displays = {await _shell(s, "echo $DISPLAY") for s in sessions}
        assert displays == {":1\n"}  # each its own container, each its own :1
    finally:
        for session in sessions:
            await session.close()
    for session in sessions:
        assert containers_of_session(docker_client, session.id) == []


async def test_a_dead_x_server_is_reported_and_can_be_restarted(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        await _shell(session, "pkill -KILL -x Xvfb")
        for _ in range(100):
            status = await session.desktop.status()
            if status["state"] == "dead":
                break
            await trio.sleep(0.05)
        assert status["state"] == "dead"
        assert "killed by signal 9" in status["death"]
        result, _ = await _computer(session, {"action": "screenshot"})
        assert result["is_error"] is True
        assert "X server" in result["content"]
        assert "restart" in result["content"]
        await session.desktop.restart()
        assert (await session.desktop.status())["state"] == "running"
        result, image = await _computer(session, {"action": "screenshot"})
        assert result.get("is_error") is not True
        assert image is not None
        assert image.size == (1024, 768)


async def test_bad_input_is_an_error_and_leaves_no_key_held(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        await _window(session, "bad", [*XTERM, "-T", "bad", "-geometry", "70x14+40+40"])
        await _computer(session, {"action": "left_click", "coordinate": [200, 120]})
        result, _ = await _computer(session, {"action": "key", "text": "ctrl+NoSuchKey"})
        assert result["is_error"] is True
        assert "unknown key name 'NoSuchKey'" in result["content"]
        result, _ = await _computer(session, {"action": "zoom", "region": [0, 0, 10, 10]}, V2)
        assert "valid actions are: " + ", ".join(ACTIONS[V2]) in result["content"]
        # Ctrl was pressed before the bad key: it must have been let go again.
        await _computer(session, {"action": "type", "text": "echo fine > /tmp/after.txt\n"})
        assert (await session.read_file("/tmp/after.txt")).decode() == "fine\n"


# -- files, the agent loop, the command line ----------------------------------------------------


async def test_screenshots_go_to_files(orch: Orchestrator, tmp_path: Path) -> None:
    async with orch.session(image="desktop", screen="1280x800") as session:
        png = await session.screenshot(str(tmp_path / "real.png"))
        assert _image((tmp_path / "real.png").read_bytes()).size == (1280, 800)
        assert png == (tmp_path / "real.png").read_bytes()
        scaled = await session.screenshot(str(tmp_path / "seen.png"), scaled=True)
        assert _image(scaled).size == (1280, 800)  # WXGA already: nothing to scale


async def test_an_agent_run_keeps_every_screenshot(orch: Orchestrator, tmp_path: Path) -> None:
    server = MessagesAPIServer(
        [
            Reply(
                text="Looking.",
                tool_uses=[
                    ToolUseReply(id="toolu_1", name="computer", input={"action": "screenshot"})
                ],
            ),
            Reply(
                tool_uses=[
                    ToolUseReply(
                        id="toolu_2",
                        name="computer",
                        input={"action": "left_click", "coordinate": [10, 10]},
                    ),
                    ToolUseReply(
                        id="toolu_3", name="computer", input={"action": "cursor_position"}
                    ),
                ]
            ),
            Reply(text="Done."),
        ]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        result = await run_agent(
            orch,
            "look at the screen",
            tools=("computer", "bash"),
            api_key="k",
            base_url=server.url,
            run_root=tmp_path,
        )
        nursery.cancel_scope.cancel()
    assert result.stop_reason == "end_turn"
    tools = server.requests[0].body["tools"]
    computer = next(tool for tool in tools if tool["name"] == "computer")
    assert computer["type"] == V3
    assert (computer["display_width_px"], computer["display_height_px"]) == (1024, 768)
    assert computer["enable_zoom"] is True
    assert "computer-use-2025-11-24" in server.requests[0].betas
    shots = sorted(result.run_dir.glob("*.png"))
    assert len(shots) == 2  # the screenshot and the click's settled screen
    assert all(_image(path.read_bytes()).size == (1024, 768) for path in shots)
    lines = [json.loads(x) for x in (result.run_dir / "transcript.jsonl").read_text().splitlines()]
    texts = [
        block["content"][0]["text"]
        for entry in lines
        if entry["type"] == "tool_results"
        for block in entry["content"]
        if isinstance(block.get("content"), list) and block["content"][0].get("type") == "text"
    ]
    assert "X=10,Y=10" in texts


def test_sbx_screenshot_writes_a_png_of_a_one_off_desktop(tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "screenshot", "-o", str(out), "--size",
         "800x600", "--", "xterm", "-bg", "blue", "-geometry", "30x10+10+10"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    image = _image(out.read_bytes())
    assert image.size == (800, 600)
    assert any(_close_to(image.getpixel((x, 80)), (0, 0, 255)) for x in range(40, 200, 10))
    assert "800x600" in done.stdout


# -- the live view --------------------------------------------------------------------------------


def _watch(url: str) -> dict[str, Any]:
    """Open the view in headless Chromium; what its canvas shows."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 850})
            page.goto(url)
            page.wait_for_selector("body[data-state=connected]", timeout=30_000)
            deadline = time.monotonic() + 20
            while True:  # the first frame arrives after the handshake
                seen = page.evaluate(
                    """() => {
                        const canvas = document.querySelector('#screen canvas');
                        const at = (x, y) => Array.from(
                            canvas.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
                        return {width: canvas.width, height: canvas.height,
                                red: at(200, 160), desktop: at(900, 600),
                                viewOnly: window.sbxView.viewOnly};
                    }"""
                )
                if seen["red"][0] > 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            seen["title"] = page.title()
            return dict(seen)
        finally:
            browser.close()


async def test_the_live_view_draws_the_desktop_in_a_browser(orch: Orchestrator) -> None:
    async with orch.session(image="desktop") as session:
        await _window(
            session, "red", ["xterm", "-T", "red", "-bg", "red", "-geometry", "40x10+100+100"]
        )
        url = await session.view_url()
        assert session.id in url
        seen = await trio.to_thread.run_sync(_watch, url)
        assert (seen["width"], seen["height"]) == (1024, 768)
        assert _close_to(tuple(seen["red"]), (255, 0, 0), slack=12)
        assert _close_to(tuple(seen["desktop"]), (0x2B, 0x4C, 0x6F), slack=12)
        assert seen["viewOnly"] is True
        assert session.id in seen["title"]
        status = await session.desktop.status()
        assert status["vnc_ports"] == [5900]  # only the view-only VNC server runs
        base, _, _ = url.rstrip("/").rpartition("/")
        async with httpx.AsyncClient() as client:
            refused = await client.get(base + "/not-the-token/")
        assert refused.status_code == 403
    # The session is gone, and its view with it.
    async with httpx.AsyncClient() as client:
        gone = await client.get(url)
    assert gone.status_code in (403, 404)


@pytest.mark.parametrize("version", [V1, V2, V3])
async def test_every_version_takes_a_screenshot_and_clicks(
    orch: Orchestrator, version: str
) -> None:
    async with orch.session(image="desktop") as session:
        result, image = await _computer(session, {"action": "screenshot"}, version)
        assert image is not None
        assert image.size == (1024, 768)
        result, image = await _computer(
            session, {"action": "mouse_move", "coordinate": [5, 6]}, version
        )
        assert result.get("is_error") is not True
        result, _ = await _computer(session, {"action": "cursor_position"}, version)
        assert result["content"][0]["text"] == "X=5,Y=6"


async def test_sbx_desktop_view_serves_until_ctrl_c(docker_client: docker.DockerClient) -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "orchestrator.cli", "desktop", "--view", "--size", "800x600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    output = b""
    try:
        with trio.fail_after(60):
            while b"Ctrl-C" not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, "sbx desktop exited early"
                output += chunk
        lines = dict(line.split(None, 1) for line in output.decode().splitlines() if " " in line)
        session_id = lines["session"].split()[0]
        assert "800x600" in lines["display"]
        url = lines["view"].split()[0]
        async with httpx.AsyncClient() as client:
            page = await client.get(url)
        assert page.status_code == 200
        assert "view only" in page.text
        assert containers_of_session(docker_client, session_id) != []
    finally:
        process.send_signal(2)  # Ctrl-C
        with trio.fail_after(30):
            code = await process.wait()
    assert code == 0
    assert containers_of_session(docker_client, session_id) == []
