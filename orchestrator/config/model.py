"""``Config``: every section together, and the image names it resolves.

Must not: read files or the environment (``loading`` does).
"""

from __future__ import annotations

from pydantic import Field

from orchestrator.config.sections import (
    ApiConfig,
    CodeExecutionConfig,
    DesktopConfig,
    EditorConfig,
    EngineConfig,
    ImagesConfig,
    LoggingConfig,
    MemoryConfig,
    PoolConfig,
    SandboxConfig,
    SessionConfig,
    ToolsConfig,
    _Section,
)

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
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    desktop: DesktopConfig = Field(default_factory=DesktopConfig)
    editor: EditorConfig = Field(default_factory=EditorConfig)
    code_execution: CodeExecutionConfig = Field(default_factory=CodeExecutionConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    owner: str = Field(
        default="local",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Label put on every sandbox this supervisor starts.",
    )
    reap_orphans: bool = Field(
        default=True, description="At start-up, remove sandboxes left by a dead supervisor."
    )
    shutdown_timeout: float = Field(default=15.0, gt=0)

    def image_name(self, name: str) -> str:
        """The engine's name of an image given by its short or full name."""
        from orchestrator.images.recipes import resolve_image_name

        return resolve_image_name(name, prefix=self.images.prefix)
