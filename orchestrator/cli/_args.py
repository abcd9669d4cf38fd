"""Argument types shared by several commands."""

from __future__ import annotations

import argparse

from orchestrator.config import parse_bytes

__all__ = ["env_pair", "size"]


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--env needs NAME=VALUE, got {text!r}")
    return name, value


def size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
