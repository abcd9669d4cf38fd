"""structlog set-up: readable on a terminal, JSON lines everywhere else.

Session ids reach every line through ``structlog.contextvars``: a session
binds ``session_id`` in its own task, and trio copies the context into every
task that session starts.  Logs go to stderr so that ``sbx run`` can pass a
command's stdout through untouched.  Embedded as a library (no structlog
configuration of the program's own), sbx logs through the standard ``logging``
module and prints nothing unless the program configures logging.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure_library_logging", "configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at write time (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: Literal["debug", "info", "warning", "error"] = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
) -> None:
    """Configure structlog process-wide; call once from an entry point."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


_LIBRARY_LOGGER = "orchestrator"


def configure_library_logging() -> None:
    """sbx inside a program that configured no structlog: stay silent unless it asks.

    A library must not write to the program's terminal.  Our events go to the standard
    ``logging`` module instead, under the ``orchestrator`` logger (with a ``NullHandler``, so
    nothing is printed by default): ``logging.basicConfig(level=logging.INFO)`` shows them,
    ``configure_logging()`` (or a structlog configuration of the program's own) replaces this.
    """
    library_logger = logging.getLogger(_LIBRARY_LOGGER)
    if not any(isinstance(h, logging.NullHandler) for h in library_logger.handlers):
        library_logger.addHandler(logging.NullHandler())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
