"""The ``[swarm]`` section: where the swarm's manager is, and how sbx speaks to its nodes.

Read only when ``engine.backend = "swarm"``.  Must not: read files (the
backend opens the certificates when it connects).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orchestrator.config.sections import _Section
from orchestrator.config.sizes import ByteSize

__all__ = ["SwarmConfig"]


class SwarmConfig(_Section):
    """A Docker Swarm: sessions as one-replica services, placed by the swarm's scheduler."""

    manager: str | None = Field(
        default=None,
        description="A manager's engine, e.g. tcp://10.0.0.1:2376; DOCKER_HOST when unset.",
    )
    engine_port: int = Field(
        default=2376,
        ge=1,
        le=65535,
        description="The TLS port every node's engine listens on (sbx attaches there).",
    )
    tls_ca: Path | None = Field(default=None, description="CA that signed the engines' certs.")
    tls_cert: Path | None = Field(default=None, description="sbx's client certificate.")
    tls_key: Path | None = Field(default=None, description="sbx's client key.")
    memory_reservation: ByteSize = Field(
        default=32 << 20,
        ge=0,
        description="Memory the scheduler reserves per sandbox (capped at its limit): an "
        "idle sandbox holds about 8 MiB (`sbx bench --density` measures it), so this is "
        "that with room for work; its limit still caps what it may use.",
    )
    cpu_reservation: float = Field(
        default=0.0, ge=0, le=64, description="CPUs the scheduler reserves per sandbox."
    )
    start_timeout: float = Field(
        default=60.0, gt=0, description="How long a service's task may take to run, s."
    )
    guest_silence: float = Field(
        default=30.0,
        ge=5,
        description="A guest that hears nothing from sbx this long exits (the dead man's "
        "switch where the engine cannot close its stdin), s.",
    )
