"""``sbx serve`` (the HTTP API) and ``sbx token`` (make and hash API tokens)."""

from __future__ import annotations

import argparse
import secrets
import sys

import trio

from orchestrator.config import Config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the HTTP API (sessions, exec, tools, files, agent runs)",
        description="Serve the HTTP API and the supervisor in one process until SIGINT/SIGTERM; "
        "shutdown lets calls finish (api.graceful_timeout) and removes every sandbox.",
    )
    serve.add_argument("--bind", help="host:port (default api.bind, 127.0.0.1:8765)")
    serve.add_argument(
        "--mcp",
        action="store_true",
        help="also serve MCP (streamable HTTP) at /mcp, under the same tokens",
    )
    serve.set_defaults(handler=_serve)

    token = sub.add_parser("token", help="make an API token, or hash one for [api].tokens")
    token.set_defaults(group_parser=token)
    actions = token.add_subparsers(dest="token_command", metavar="ACTION")
    new = actions.add_parser("new", help="print a new random token and its sha256")
    new.add_argument("--owner", default="me", help="owner name for the config line")
    new.set_defaults(handler=_token_new)
    hash_ = actions.add_parser("hash", help="print the sha256 of a token (read from stdin)")
    hash_.set_defaults(handler=_token_hash)


def _serve(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.api.server import serve_api

    trio.run(lambda: serve_api(config, bind=args.bind, mcp=args.mcp))
    return 0


def _token_new(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.api.auth import hash_token

    token = "sbx_" + secrets.token_urlsafe(32)
    print(f"token:  {token}")
    print(f'config: tokens = [{{ owner = "{args.owner}", sha256 = "{hash_token(token)}" }}]')
    return 0


def _token_hash(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.api.auth import hash_token

    token = sys.stdin.readline().strip()
    if not token:
        print(
            "sbx: give the token on stdin, e.g. `echo $SBX_TOKEN | sbx token hash`", file=sys.stderr
        )
        return 2
    print(hash_token(token))
    return 0
