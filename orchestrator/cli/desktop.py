"""``sbx desktop`` (a desktop session kept open, optionally watched live) and ``sbx screenshot``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import trio

from orchestrator.config import Config
from orchestrator.errors import SessionClosed

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    desktop = sub.add_parser(
        "desktop",
        help="open a desktop sandbox and keep it until Ctrl-C",
        description="Open a desktop sandbox, print how to reach it (with --view, a URL that "
        "shows it live in a browser), and keep it open until Ctrl-C.",
    )
    desktop.add_argument("--image", default="desktop", help="image (default: desktop)")
    desktop.add_argument("--size", help="screen, WIDTHxHEIGHT[xDEPTH] (default from config)")
    desktop.add_argument("--view", action="store_true", help="print a live view URL")
    desktop.add_argument(
        "--interactive",
        action="store_true",
        help="let the live view type and click too (default: view only)",
    )
    desktop.add_argument("--host", help="address the view server listens on (desktop.view_host)")
    desktop.add_argument("--port", type=int, help="port of the view server (desktop.view_port)")
    desktop.add_argument("--network", action="store_true", help="give the sandbox network access")
    desktop.set_defaults(handler=_desktop, quiet_logs=True, group_parser=desktop)

    shot = sub.add_parser(
        "screenshot",
        help="take a screenshot of a one-off desktop",
        description="Start a desktop sandbox, optionally run CMD on it (in the background), "
        "wait for the screen to settle, save a PNG and remove the sandbox.",
    )
    shot.add_argument("--output", "-o", required=True, help="PNG file to write")
    shot.add_argument("--image", default="desktop", help="image (default: desktop)")
    shot.add_argument("--size", help="screen, WIDTHxHEIGHT[xDEPTH] (default from config)")
    shot.add_argument(
        "--wait", type=float, default=None, help="seconds to wait after starting CMD (default 1)"
    )
    shot.add_argument(
        "--scaled", action="store_true", help="the size Claude would see, not the real screen"
    )
    shot.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD...",
        help="a command to start first (e.g. a program to show)",
    )
    shot.set_defaults(handler=_screenshot, quiet_logs=True, group_parser=shot)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"image": args.image, "desktop": True}
    if args.size:
        options["screen"] = args.size
    if getattr(args, "network", False):
        options["network"] = True
    return options


def _desktop(args: argparse.Namespace, config: Config) -> int:
    updates: dict[str, Any] = {}
    if args.host:
        updates["view_host"] = args.host
    if args.port is not None:
        updates["view_port"] = args.port
    if updates:
        config = config.model_copy(update={"desktop": config.desktop.model_copy(update=updates)})
    return trio.run(keep_desktop, config, _options(args), args.view, args.interactive)


async def keep_desktop(
    config: Config, options: dict[str, Any], view: bool, interactive: bool
) -> int:
    """Open the session, say how to reach it, and wait for Ctrl-C (or the session's end)."""
    from orchestrator.runtime import Orchestrator

    orch = Orchestrator(config.model_copy(update={"reap_orphans": False}), handle_signals=True)
    try:
        async with orch, orch.session(**options) as session:
            desktop = session.desktop
            scaling = desktop.scaling
            print(f"session   {session.id} ({session.image})")
            print(
                f"display   {desktop.display}, {scaling.screen} (Claude sees {scaling.advertised})"
            )
            if view:
                url = await session.view_url(interactive=interactive)
                mode = "interactive" if interactive else "view only"
                print(f"view      {url}  ({mode})")
            print("Ctrl-C closes the sandbox.", flush=True)
            while not session.closed:  # noqa: ASYNC110 - it may expire (TTL) as well as be closed
                await trio.sleep(1)
            print(f"sbx: the session ended ({session.close_reason})", file=sys.stderr)
    except SessionClosed:
        if orch.signalled is None:
            raise
    return 0


def _screenshot(args: argparse.Namespace, config: Config) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    wait = args.wait if args.wait is not None else (1.0 if command else 0.0)
    return trio.run(
        take_screenshot, config, _options(args), Path(args.output), command, wait, args.scaled
    )


async def take_screenshot(
    config: Config,
    options: dict[str, Any],
    output: Path,
    command: list[str],
    wait: float,
    scaled: bool,
) -> int:
    from orchestrator.runtime import Orchestrator

    config = config.model_copy(update={"reap_orphans": False})
    async with Orchestrator(config) as orch, orch.session(**options) as session:
        if command:
            started = await session.exec(
                "setsid sh -c "
                + shlex.quote(shlex.join(command) + " >/tmp/sbx-screenshot.log 2>&1")
                + " </dev/null >/dev/null 2>&1 &",
                timeout=30,
            )
            if started.exit_code != 0:
                print(f"sbx: could not start {shlex.join(command)}", file=sys.stderr)
                return 1
        if wait > 0:
            await trio.sleep(wait)
        shot = await session.desktop.screenshot(scaled=scaled, settle=True)
        await trio.Path(output).write_bytes(shot.png)
    print(f"{output}  {shot.width}x{shot.height}  {len(shot.png):,} bytes")
    return 0
