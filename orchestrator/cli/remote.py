"""Commands that drive a running ``sbx serve`` over HTTP (``SBX_URL``, ``SBX_TOKEN``).

``sbx session new|ls|rm|snapshot``, ``sbx exec SESSION -- CMD``, ``sbx cp``, ``sbx tool``.
They print what the server says and exit non-zero with its message on errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cli._args import env_pair, memory_size
from orchestrator.cli.parsing import EXIT_FAILED, EXIT_SBX_FAILED, runs_a_command
from orchestrator.cli.secret_args import SecretError, add_secret_options, secret_from_args
from orchestrator.config import Config
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.api.client import SbxClient

__all__ = ["register"]


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="API base URL (default $SBX_URL or http://127.0.0.1:8765)")
    add_secret_options(parser, name="token", what="API token", env="SBX_TOKEN")


def _client(args: argparse.Namespace) -> SbxClient:
    from orchestrator.api.client import SbxClient

    try:
        token = secret_from_args(args, name="token", env="SBX_TOKEN")
    except SecretError as exc:
        raise ConfigError(str(exc)) from None
    return SbxClient(args.url, token)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    session = sub.add_parser("session", help="create, list and remove sessions on a server")
    session.set_defaults(group_parser=session)
    actions = session.add_subparsers(dest="session_command", metavar="ACTION")
    new = actions.add_parser("new", help="start a session; prints its id")
    _client_args(new)
    new.add_argument("--image", help="image, short name or full (default: the server's)")
    new.add_argument(
        "--memory", type=memory_size, help="memory limit, at least 16m (default: the server's)"
    )
    new.add_argument("--cpus", type=float, help="CPU limit, e.g. 0.5 (default: the server's)")
    new.add_argument("--network", action="store_true", help="give the sandbox network access")
    new.add_argument(
        "--env",
        "-e",
        type=env_pair,
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable (repeatable)",
    )
    new.add_argument(
        "--ttl", type=float, help="seconds before the session is closed (default: the server's)"
    )
    new.add_argument(
        "--label",
        type=env_pair,
        action="append",
        default=[],
        metavar="K=V",
        help="a label to find the session by (repeatable)",
    )
    new.set_defaults(handler=_session_new)
    ls = actions.add_parser("ls", help="list your sessions")
    _client_args(ls)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=_session_ls)
    rm = actions.add_parser("rm", help="close sessions (their sandboxes are removed)")
    _client_args(rm)
    rm.add_argument("ids", nargs="+", metavar="SESSION", help="session ids")
    rm.set_defaults(handler=_session_rm)
    snap = actions.add_parser(
        "snapshot", help="keep a session's files as an image; prints its name (fork: new --image)"
    )
    _client_args(snap)
    snap.add_argument("id", metavar="SESSION", help="the session's id (`sbx session ls`)")
    snap.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    snap.set_defaults(handler=_session_snapshot)

    exec_ = sub.add_parser(
        "exec",
        help="run a command in a server's session, output streamed",
        description="Run CMD in SESSION on the server; output passes through unchanged. The "
        "exit status is the command's (124 on timeout), 125 when sbx itself fails.",
    )
    _client_args(exec_)
    exec_.add_argument("session", help="the session's id (`sbx session ls`)")
    exec_.add_argument(
        "--timeout", type=float, help="seconds before the command is killed (default: none)"
    )
    exec_.add_argument("--workdir", "-w", help="working directory in the sandbox")
    exec_.add_argument(
        "--env",
        "-e",
        type=env_pair,
        action="append",
        default=[],
        metavar="K=V",
        help="environment variable (repeatable)",
    )
    exec_.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command and its arguments"
    )
    exec_.set_defaults(handler=_exec, group_parser=exec_)
    runs_a_command(exec_)

    cp = sub.add_parser(
        "cp", help="copy a file, or a folder with -r, to or from a session (SESSION:/path)"
    )
    _client_args(cp)
    cp.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="copy a folder: SOURCE's contents into DEST (made if missing), as a tar stream",
    )
    cp.add_argument("source", help="a local path, - for stdin, or SESSION:/path")
    cp.add_argument("dest", help="a local path, - for stdout, or SESSION:/path")
    cp.set_defaults(handler=_cp)

    view = sub.add_parser("view", help="print a live view URL of a desktop session")
    _client_args(view)
    view.add_argument("session", help="the desktop session's id")
    view.add_argument("--interactive", action="store_true", help="allow mouse and keyboard")
    view.set_defaults(handler=_view)

    tool = sub.add_parser("tool", help="run tool_use blocks (JSON, or - for stdin) in a session")
    _client_args(tool)
    tool.add_argument("session", help="the session's id")
    tool.add_argument("blocks", help="a tool_use block, a list of them, or {'tool_uses': [...]}")
    tool.set_defaults(handler=_tool)


def _run(action: Any, failure: int = EXIT_FAILED) -> int:
    from orchestrator.api.client import ApiClientError

    try:
        code: int = action()
        return code
    except ApiClientError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return failure


def _session_new(args: argparse.Namespace, config: Config) -> int:
    options: dict[str, Any] = {}
    for key in ("image", "memory", "cpus", "ttl"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.network:
        options["network"] = True
    if args.env:
        options["env"] = dict(args.env)
    if args.label:
        options["labels"] = dict(args.label)

    def act() -> int:
        with _client(args) as client:
            print(client.create_session(**options)["id"])
        return 0

    return _run(act)


def _session_ls(args: argparse.Namespace, config: Config) -> int:
    def act() -> int:
        with _client(args) as client:
            sessions = client.list_sessions()
        if args.json:
            print(json.dumps(sessions))
            return 0
        print(f"{'ID':<14} {'IMAGE':<24} {'STATE':<8} {'OWNER':<12} CALLS")
        for s in sessions:
            print(
                f"{s['id']:<14} {s['image']:<24} {s['state']:<8} {s.get('owner') or '-':<12} "
                f"{s.get('active_calls', 0)}"
            )
        return 0

    return _run(act)


def _session_snapshot(args: argparse.Namespace, config: Config) -> int:
    def act() -> int:
        with _client(args) as client:
            snapshot = client.snapshot_session(args.id)
        print(json.dumps(snapshot) if args.json else snapshot["image"])
        return 0

    return _run(act)


def _session_rm(args: argparse.Namespace, config: Config) -> int:
    def act() -> int:
        with _client(args) as client:
            for session_id in args.ids:
                client.delete_session(session_id)
                print(f"removed {session_id}")
        return 0

    return _run(act)


def _exec(args: argparse.Namespace, config: Config) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        args.group_parser.error("exec needs a command: sbx exec SESSION -- CMD [ARG...]")
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.workdir:
        options["cwd"] = args.workdir
    if args.env:
        options["env"] = dict(args.env)

    from orchestrator.api.client import ApiClientError
    from orchestrator.exec_events import StreamFailed, exit_status, relay

    def act() -> int:
        with _client(args) as client:
            events = client.exec_stream(args.session, command, **options)
            try:
                result = relay(events, sys.stdout.buffer, sys.stderr.buffer)
            except StreamFailed as exc:
                raise ApiClientError(exc.status, exc.kind, exc.message) from None
            return exit_status(result)

    return _run(act, EXIT_SBX_FAILED)


def _split(target: str) -> tuple[str | None, str]:
    session, sep, path = target.partition(":")
    if sep and path.startswith("/") and "/" not in session:
        return session, path
    return None, target


def _cp(args: argparse.Namespace, config: Config) -> int:
    src_session, src = _split(args.source)
    dst_session, dst = _split(args.dest)
    if (src_session is None) == (dst_session is None):
        raise ConfigError(
            "sbx cp copies between a local path and SESSION:/path; name exactly one "
            "side as SESSION:/absolute/path"
        )

    def act() -> int:
        with _client(args) as client:
            if args.recursive:
                return _cp_folder(client, src_session, src, dst_session, dst)
            if dst_session is not None:
                if src == "-":
                    client.upload(dst_session, dst, sys.stdin.buffer.read())
                elif Path(src).is_dir():
                    raise ConfigError(f"{src} is a folder; copy it with `sbx cp -r`")
                else:
                    client.upload_file(dst_session, dst, src)
            else:
                assert src_session is not None
                if dst == "-":
                    client.download_to(src_session, src, sys.stdout.buffer)
                else:
                    client.download_file(src_session, src, dst)
        return 0

    try:
        return _run(act)
    except OSError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1


def _cp_folder(
    client: SbxClient,
    src_session: str | None,
    src: str,
    dst_session: str | None,
    dst: str,
) -> int:
    """``sbx cp -r``: a folder's contents into another (made if missing)."""
    if "-" in (src, dst):
        raise ConfigError("sbx cp -r copies folders, not stdin or stdout; name a local folder")
    if dst_session is not None:
        if not Path(src).is_dir():
            raise ConfigError(f"{src} is not a local folder; check the path")
        done = client.put_dir(dst_session, src, dst)
        print(f"copied {done.get('entries', 0)} entries ({done.get('bytes', 0)} bytes) to {dst}")
        return 0
    assert src_session is not None
    copied = client.get_dir(src_session, src, dst)
    for skipped in copied.skipped:
        print(f"sbx: skipped {skipped}", file=sys.stderr)
    print(f"copied {copied.entries} entries ({copied.bytes} bytes) to {dst}")
    return 1 if copied.skipped else 0


def _view(args: argparse.Namespace, config: Config) -> int:
    def act() -> int:
        with _client(args) as client:
            print(client.view_url(args.session, interactive=args.interactive))
        return 0

    return _run(act)


def _tool(args: argparse.Namespace, config: Config) -> int:
    raw = sys.stdin.read() if args.blocks == "-" else args.blocks
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"the tool_use JSON does not parse: {exc}") from None
    if isinstance(data, dict) and "tool_uses" in data:
        blocks = data["tool_uses"]
    elif isinstance(data, dict):
        blocks = [data]
    else:
        blocks = data
    for number, block in enumerate(blocks):
        if isinstance(block, dict):
            block.setdefault("type", "tool_use")
            block.setdefault("id", f"toolu_cli_{number}")

    def act() -> int:
        with _client(args) as client:
            print(json.dumps(client.run_tools(args.session, blocks), indent=2))
        return 0

    return _run(act)
