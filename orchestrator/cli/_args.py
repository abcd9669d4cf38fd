"""Argument types shared by several commands."""

from __future__ import annotations

import argparse

from orchestrator.config import MIN_MEMORY, MIN_MEMORY_TEXT, human_bytes, parse_bytes

__all__ = ["env_pair", "memory_size", "size"]


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


def memory_size(text: str) -> int:
    """A sandbox's memory limit: a size of at least 16m, refused in units a person reads."""
    value = size(text)
    if value < MIN_MEMORY:
        raise argparse.ArgumentTypeError(
            f"{text} ({human_bytes(value)}) is too little: a sandbox needs at least "
            f"{MIN_MEMORY_TEXT}, e.g. 512m or 1g"
        )
    return value
