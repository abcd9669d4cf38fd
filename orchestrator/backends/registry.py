"""Backends by name: ``engine.backend`` in the configuration picks one.

A backend registers, under a name, a factory for its ``SandboxBackend`` and
one for the ``ImageEngine`` the image builder loads images through;
``make_backend`` and ``make_image_builder`` build what the configuration
names.  Factories are registered as import paths and imported on first use,
so choosing the Docker backend never loads another engine's client (and
``sbx --help`` loads none).  A new backend plugs in with
``register_backend`` -- nothing above this layer changes.

The in-memory fake is deliberately not registered: it runs the guest as a
plain host process, with no isolation at all, and must never be chosen by a
configuration file.  Tests hand it to ``Orchestrator(backend=...)``.

Must not: import any engine's client at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.backends.base import SandboxBackend
from orchestrator.config import Config
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.images.builder import ImageBuilder
    from orchestrator.images.engine import ImageEngine

__all__ = [
    "BackendFactory",
    "ImageEngineFactory",
    "backend_names",
    "make_backend",
    "make_image_builder",
    "register_backend",
]

BackendFactory = Callable[[Config], SandboxBackend]
"""Builds a backend from the whole configuration (its own section included)."""
ImageEngineFactory = Callable[[Config], "ImageEngine"]
"""Builds what the image builder needs of the same engine."""


@dataclass
class _Entry:
    backend: BackendFactory | str
    image_engine: ImageEngineFactory | str


_BACKENDS: dict[str, _Entry] = {
    "docker": _Entry(
        backend="orchestrator.backends.docker.backend:docker_backend",
        image_engine="orchestrator.backends.docker.image_engine:docker_image_engine",
    ),
    "swarm": _Entry(
        backend="orchestrator.backends.swarm.backend:swarm_backend",
        image_engine="orchestrator.backends.swarm.backend:swarm_image_engine",
    ),
}


def register_backend(
    name: str, backend: BackendFactory | str, image_engine: ImageEngineFactory | str
) -> None:
    """Make ``engine.backend = name`` build sandboxes with ``backend`` and load images
    with ``image_engine``: callables, or ``"module:function"`` to import on first use."""
    _BACKENDS[name] = _Entry(backend, image_engine)


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def _entry(config: Config) -> _Entry:
    name = config.engine.backend
    entry = _BACKENDS.get(name)
    if entry is None:
        raise ConfigError(
            f"engine.backend = {name!r} names no backend; the backends are: "
            f"{', '.join(backend_names())}"
        )
    return entry


def _load(factory: Callable[[Config], Any] | str) -> Callable[[Config], Any]:
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        loaded: Callable[[Config], Any] = getattr(importlib.import_module(module), attribute)
        return loaded
    return factory


def make_backend(config: Config) -> SandboxBackend:
    """The backend named by ``engine.backend``, built from ``config``."""
    backend: SandboxBackend = _load(_entry(config).backend)(config)
    return backend


def make_image_builder(config: Config) -> ImageBuilder:
    """The image builder, loading images into the engine ``engine.backend`` names."""
    from orchestrator.images.builder import ImageBuilder

    engine: ImageEngine = _load(_entry(config).image_engine)(config)
    return ImageBuilder(engine, config.images)
