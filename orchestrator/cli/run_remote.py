"""``sbx run`` against a running ``sbx serve`` (``--url`` or ``$SBX_URL``).

The docker CLI answers ``docker run`` fast because it is a thin client of a
daemon that is already up; this is the same arrangement.  It is reached
before the rest of the CLI is imported and uses the standard library only,
so a run costs the interpreter's start-up and a few loopback requests --
and, with spare sandboxes configured on the server (``[pool]``), no wait for
a container at all.

The command's stdout and stderr bytes pass through unchanged as the server
streams them (NDJSON); the exit status is the command's, 124 on timeout, as
in the local mode.  The session is removed on every way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.exec_events import StreamFailed, exit_status, relay

if TYPE_CHECKING:
    import http.client

__all__ = ["main", "wants_remote"]

_GLOBAL_OPTIONS_WITH_VALUE = ("--config", "--log-level", "--log-format")


class _ApiError(Exception):
    pass


def _split_global(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The sub-command and the arguments after it, skipping the global options."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in _GLOBAL_OPTIONS_WITH_VALUE:
            index += 2
        elif token.startswith("-"):
            index += 1  # --opt=value, or something the full parser will judge
        else:
            return token, list(argv[index + 1 :])
    return None, []


def _run_options(args: Sequence[str]) -> list[str]:
    """``run``'s own options: what comes before ``--`` or the command's first word."""
    options: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--" or not token.startswith("-"):
            break
        options.append(token)
        if token in _options_with_values():
            options.extend(args[index + 1 : index + 2])
            index += 1
        index += 1
    return options


def wants_remote(argv: Sequence[str]) -> bool:
    """Whether this is ``sbx run`` for a server: ``--url``, or ``$SBX_URL`` and no ``--local``."""
    command, rest = _split_global(argv)
    if command != "run":
        return False
    options = _run_options(rest)
    if "--local" in options or any(o in ("-h", "--help") for o in options):
        return False
    explicit = any(o == "--url" or o.startswith("--url=") for o in options)
    return explicit or bool(os.environ.get("SBX_URL"))


def _options_with_values() -> set[str]:
    """``run``'s options that take a value, read off the parser below."""
    return {
        flag for action in _parser()._actions if action.nargs != 0 for flag in action.option_strings
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sbx run", add_help=False)
    parser.add_argument("--image")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--network", action="store_true")
    parser.add_argument("--env", "-e", action="append", default=[])
    parser.add_argument("--workdir", "-w")
    parser.add_argument("--memory", "-m")
    parser.add_argument("--cpus", type=float)
    parser.add_argument("--interactive", "-i", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser


class _Api:
    """Requests to the server over one keep-alive connection."""

    def __init__(self, url: str, token: str | None) -> None:
        import http.client  # here, not above: the local mode never needs it
        import urllib.parse

        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _ApiError(f"--url/SBX_URL must be an http(s) URL, got {url!r}")
        connection = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._prefix = parts.path.rstrip("/")
        self._conn = connection(parts.hostname, parts.port, timeout=600)
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def request(
        self, method: str, path: str, body: Any = None, accept: str = "application/json"
    ) -> http.client.HTTPResponse:
        import http.client

        data = json.dumps(body).encode() if body is not None else None
        try:
            self._conn.request(
                method, self._prefix + path, body=data, headers={**self._headers, "Accept": accept}
            )
            response = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise _ApiError(
                f"cannot reach the sbx API at {self.url} ({exc}); start `sbx serve`, point "
                "--url/SBX_URL at a running one, or run locally with --local"
            ) from None
        if response.status >= 400:
            raw = response.read()
            try:
                error = json.loads(raw).get("error", {})
                message = error.get("message") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace") or response.reason
            raise _ApiError(f"{message} (HTTP {response.status})")
        return response

    def json(self, method: str, path: str, body: Any = None) -> Any:
        raw = self.request(method, path, body).read()
        return json.loads(raw) if raw else None

    def events(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        response = self.request("POST", path, body, accept="application/x-ndjson")
        while True:
            line = response.readline()
            if not line:
                return
            if line.strip():
                yield json.loads(line)

    def close(self) -> None:
        self._conn.close()


def one_shot_options(
    *,
    image: str | None,
    network: bool,
    env: dict[str, str],
    workdir: str | None,
    memory: int | str | None,
    cpus: float | None,
) -> dict[str, Any]:
    """The session options of a one-shot ``sbx run``, local or on a server."""
    # A one-shot command needs no memory store, and untrusted code should not see it.
    options: dict[str, Any] = {"memories": False}
    if image:
        options["image"] = image
    if network:
        options["network"] = True
    if env:
        options["env"] = env
    if workdir:
        options["workdir"] = workdir
    if memory:
        options["memory"] = memory
    if cpus:
        options["cpus"] = cpus
    return options


def _session_body(args: argparse.Namespace) -> dict[str, Any]:
    env = {}
    for pair in args.env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise _ApiError(f"--env needs NAME=VALUE, got {pair!r}")
        env[name] = value
    return one_shot_options(
        image=args.image,
        network=args.network,
        env=env,
        workdir=args.workdir,
        memory=args.memory,
        cpus=args.cpus,
    )


def _stream(api: _Api, session_id: str, request: dict[str, Any]) -> int:
    events = api.events(f"/v1/sessions/{session_id}/exec", request)
    try:
        result = relay(events, sys.stdout.buffer, sys.stderr.buffer)
    except StreamFailed as exc:
        raise _ApiError(exc.message) from None
    if result.get("truncated"):
        print("sbx: output was truncated (the server's session.output_limit)", file=sys.stderr)
    if result.get("oom_killed"):
        print("sbx: the command ran out of memory (raise --memory)", file=sys.stderr)
    return exit_status(result)


def main(argv: Sequence[str]) -> int:
    _, rest = _split_global(argv)
    args, unknown = _parser().parse_known_args(rest)
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if unknown or not command:
        # The full parser words the usage error exactly as the local mode does.
        from orchestrator.cli import main_local

        return main_local(argv)
    url = args.url or os.environ.get("SBX_URL", "")
    token = args.token if args.token is not None else os.environ.get("SBX_TOKEN")
    request: dict[str, Any] = {"command": command}
    if args.timeout is not None:
        request["timeout"] = args.timeout
    try:
        if args.interactive:
            request["stdin_b64"] = base64.b64encode(sys.stdin.buffer.read()).decode()
        api = _Api(url, token)
    except _ApiError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 2
    session_id: str | None = None
    try:
        session_id = str(api.json("POST", "/v1/sessions", _session_body(args))["id"])
        return _stream(api, session_id, request)
    except _ApiError as exc:
        print(f"sbx: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if session_id is not None:
            try:
                api.close()  # a stream cut short leaves the connection unusable
                api.request("DELETE", f"/v1/sessions/{session_id}").read()
            except (_ApiError, KeyboardInterrupt):
                print(
                    f"sbx: could not remove session {session_id}; it expires on its own, "
                    f"or remove it with `sbx session rm {session_id}`",
                    file=sys.stderr,
                )
        api.close()
