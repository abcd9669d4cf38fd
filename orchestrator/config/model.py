"""``Config``: every section together, and the image names it resolves.

Must not: read files or the environment (``loading`` does).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from orchestrator.config.agent import AgentConfig
from orchestrator.config.api_sections import ApiConfig
from orchestrator.config.resilience import ResilienceConfig
from orchestrator.config.sandbox import (
    LimitsConfig,
    SandboxConfig,
    memory_arithmetic,
)
from orchestrator.config.sections import (
    CodeExecutionConfig,
    DesktopConfig,
    EditorConfig,
    EngineConfig,
    ImagesConfig,
    LoggingConfig,
    MemoryConfig,
    PoolConfig,
    SessionConfig,
    ToolsConfig,
    _Section,
)
from orchestrator.config.sizes import human_bytes
from orchestrator.config.swarm import SwarmConfig

__all__ = ["Config"]


class Config(_Section):
    """Everything the orchestrator can be told; see ``sbx.example.toml``.

    ``Config()`` is the built-in defaults alone; ``load_config()`` layers the
    TOML file and the environment on top.
    """

    engine: EngineConfig = Field(default_factory=EngineConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    session: SessionConfig = Field(default_factory=SessionConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    desktop: DesktopConfig = Field(default_factory=DesktopConfig)
    editor: EditorConfig = Field(default_factory=EditorConfig)
    code_execution: CodeExecutionConfig = Field(default_factory=CodeExecutionConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
    owner: str = Field(
        default="local",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Label put on every sandbox this supervisor starts.",
    )
    reap_orphans: bool = Field(
        default=True, description="At start-up, remove sandboxes left by a dead supervisor."
    )
    shutdown_timeout: float = Field(default=15.0, gt=0)

    _loaded: Any = PrivateAttr(default=None)
    """The ``LoadedConfig`` this came from (``load_config`` sets it): how to read it again."""

    def image_name(self, name: str) -> str:
        """The engine's name of an image given by its short or full name."""
        from orchestrator.images.assets import resolve_image_name

        return resolve_image_name(name, prefix=self.images.prefix)

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> Config:
        """The sandbox defaults must fit under the ceilings a session's own request must."""
        sandbox, limits = self.sandbox, self.limits
        if sandbox.memory_limit > limits.max_memory:
            tmpfs = sandbox.tmpfs_for(sandbox.memory)
            arithmetic = memory_arithmetic(sandbox.memory, tmpfs, sandbox.shm_size)
            raise ValueError(
                f"a default sandbox needs {arithmetic} of memory (tmpfs pages count as "
                f"memory), over limits.max_memory ({human_bytes(limits.max_memory)}); lower "
                "sandbox.memory or sandbox.tmpfs, or raise limits.max_memory"
            )
        for mount, size in sandbox.tmpfs_for(sandbox.memory).items():
            if size > limits.max_tmpfs_size:
                raise ValueError(
                    f"sandbox.tmpfs {mount!r} = {human_bytes(size)} is over "
                    f"limits.max_tmpfs_size ({human_bytes(limits.max_tmpfs_size)}); lower it "
                    "or raise the limit"
                )
        checks = (
            ("sandbox.cpus", sandbox.cpus, "limits.max_cpus", limits.cpus()),
            ("sandbox.pids_limit", sandbox.pids_limit, "limits.max_pids", limits.max_pids),
            ("session.ttl", self.session.ttl, "limits.max_ttl", limits.max_ttl),
            (
                "session.idle_timeout",
                self.session.idle_timeout,
                "limits.max_ttl",
                limits.max_ttl,
            ),
        )
        for key, value, ceiling_key, ceiling in checks:
            if value > ceiling:
                raise ValueError(
                    f"{key} = {value:g} is over {ceiling_key} ({ceiling:g}); lower it or raise "
                    "the limit"
                )
        return self
