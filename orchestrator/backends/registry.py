"""Backends by name: ``engine.backend`` in the configuration picks one.

A backend registers a factory under a name; ``make_backend`` builds the one
the configuration names.  Factories are registered as import paths and
imported on first use, so choosing the Docker backend never loads another
engine's client (and ``sbx --help`` loads none).  A new backend plugs in
with ``register_backend`` -- nothing above this layer changes.

The in-memory fake is deliberately not registered: it runs the guest as a
plain host process, with no isolation at all, and must never be chosen by a
configuration file.  Tests hand it to ``Orchestrator(backend=...)``.

Must not: import any engine's client at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from orchestrator.backends.base import SandboxBackend
from orchestrator.config import Config
from orchestrator.errors import ConfigError

__all__ = ["BackendFactory", "backend_names", "make_backend", "register_backend"]

BackendFactory = Callable[[Config], SandboxBackend]
"""Builds a backend from the whole configuration (its own section included)."""

_FACTORIES: dict[str, BackendFactory | str] = {
    "docker": "orchestrator.backends.docker.backend:docker_backend",
}


def register_backend(name: str, factory: BackendFactory | str) -> None:
    """Make ``engine.backend = name`` build backends with ``factory``.

    ``factory`` is a callable, or ``"module:function"`` to import on first use.
    """
    _FACTORIES[name] = factory


def backend_names() -> list[str]:
    return sorted(_FACTORIES)


def _resolve(name: str) -> BackendFactory:
    entry = _FACTORIES.get(name)
    if entry is None:
        raise ConfigError(
            f"engine.backend = {name!r} names no backend; the backends are: "
            f"{', '.join(backend_names())}"
        )
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        factory: BackendFactory = getattr(importlib.import_module(module), attribute)
        _FACTORIES[name] = factory
        return factory
    return entry


def make_backend(config: Config) -> SandboxBackend:
    """The backend named by ``engine.backend``, built from ``config``."""
    return _resolve(config.engine.backend)(config)
