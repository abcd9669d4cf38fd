"""Secrets on the command line: read from a file or the environment, never typed as a value.

A value given as ``--token VALUE`` shows in ``ps`` to every user of the machine
and stays in the shell's history, so ``--token-file FILE`` (``-`` for stdin)
and the environment (``SBX_TOKEN``, ``ANTHROPIC_API_KEY``) are the ways to
pass one; ``--token`` and ``--api-key`` still work, with a warning.  Standard
library only: the thin ``sbx run`` client uses it.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["SecretError", "add_secret_options", "secret_from_args"]


class SecretError(ValueError):
    """A secret's file cannot be read, or holds nothing."""


def add_secret_options(parser: argparse.ArgumentParser, *, name: str, what: str, env: str) -> None:
    """``--NAME-file FILE`` and the deprecated ``--NAME VALUE``, both to ``dest`` ``NAME``."""
    dest = name.replace("-", "_")
    parser.add_argument(
        f"--{name}-file",
        dest=f"{dest}_file",
        metavar="FILE",
        help=f"read the {what} from FILE (- for stdin; default: ${env})",
    )
    parser.add_argument(
        f"--{name}",
        dest=dest,
        metavar="VALUE",
        help=f"deprecated: the value shows in `ps` and shell history; use --{name}-file or ${env}",
    )


def secret_from_args(args: argparse.Namespace, *, name: str, env: str) -> str | None:
    """The secret given by ``--NAME-file`` or ``--NAME`` (warned about), or ``None`` for the
    caller's default (the environment).  Raises ``SecretError`` naming the file and the fix."""
    dest = name.replace("-", "_")
    path: str | None = getattr(args, f"{dest}_file", None)
    value: str | None = getattr(args, dest, None)
    if path is not None and value is not None:
        raise SecretError(f"give --{name}-file or --{name}, not both")
    if path is not None:
        return read_secret_file(path, flag=f"--{name}-file")
    if value is not None:
        print(
            f"sbx: warning: --{name} is deprecated (the value shows in `ps` and the shell's "
            f"history); use --{name}-file FILE or ${env}",
            file=sys.stderr,
        )
    return value


def read_secret_file(path: str, *, flag: str) -> str:
    """The first line of ``path`` (``-``: stdin), without surrounding blanks."""
    try:
        if path == "-":
            text = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.readline()
    except OSError as exc:
        raise SecretError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SecretError(f"{flag} {path}: not UTF-8 text") from None
    secret = text.strip()
    if not secret:
        raise SecretError(f"{flag} {path}: the file is empty; its first line is the secret")
    return secret
