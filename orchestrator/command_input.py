"""What a command may carry: text a program can receive, within the configured size.

A command line travels to the kernel's ``execve`` as NUL-terminated UTF-8
strings, so text with a NUL or a lone surrogate (from decoding bytes that
were not UTF-8) cannot reach a program intact, and the kernel refuses
command lines of more than about 2 MiB.  Checked here, before anything is
sent, each refusal names what is wrong, where, and the configured limit.

Must not: know how the command travels to the guest (the channel splits
large requests itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.errors import InputTooLarge, InvalidInput

__all__ = ["check_command_input"]


def _bad_text(what: str, text: str) -> InvalidInput | None:
    if "\0" in text:
        return InvalidInput(
            f"{what} holds a NUL byte at position {text.index(chr(0))}; a command line cannot "
            "carry one — pass the data on stdin or in a file instead"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return InvalidInput(
            f"{what} holds text that is not valid Unicode at position {exc.start} "
            f"({text[exc.start]!a}, a lone surrogate from bytes that were not UTF-8); decode "
            "the bytes with their real encoding, or pass the data on stdin as bytes"
        )
    return None


def check_command_input(
    parts: Sequence[str], env: Mapping[str, str], cwd: str | None, *, max_bytes: int
) -> None:
    """Raise ``InvalidInput`` or ``InputTooLarge`` for a command that cannot be run as given."""
    total = 0
    checks = [
        (f"argument {index}" if len(parts) > 1 else "the command", part)
        for index, part in enumerate(parts)
    ]
    checks += [
        (f"environment variable {name[:64]!r}", f"{name}={value}") for name, value in env.items()
    ]
    if cwd is not None:
        checks.append(("the working directory", cwd))
    for what, text in checks:
        problem = _bad_text(what, text)
        if problem is not None:
            raise problem
        total += len(text.encode("utf-8")) + 1
    if total > max_bytes:
        raise InputTooLarge(
            f"the command, its arguments and environment come to {total} bytes, over "
            f"session.max_command_bytes ({max_bytes}); pass large data on stdin or in a file "
            "(write_file) instead",
            limit=max_bytes,
            key="session.max_command_bytes",
        )
