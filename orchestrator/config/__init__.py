"""Configuration: pydantic models loaded from TOML, overridden by ``SBX_*``.

``sections`` holds one model per ``[table]`` (``api_sections`` that of
``sbx serve``, ``agent`` the agent loop's), ``model`` the whole ``Config``,
``loading`` reads the file and the environment (precedence, highest first:
values given on the command line or in code, ``SBX_*`` variables, the
file's profile, the TOML or YAML file, the defaults),
``sizes`` parses ``"512m"``-style sizes.  ``sources`` are the layers (built on
pydantic-settings), ``origins`` says where each value came from, ``reload``
which changes a running server may take.
"""

from orchestrator.config.agent import DEFAULT_PRICES, AgentConfig, ModelPrice
from orchestrator.config.api_sections import ApiConfig, ApiToken, normalize_base_url
from orchestrator.config.loading import (
    NOT_CONFIG_VARIABLES,
    LoadedConfig,
    explain_config,
    load_config,
)
from orchestrator.config.model import Config
from orchestrator.config.resilience import ResilienceConfig
from orchestrator.config.sandbox import (
    LimitsConfig,
    SandboxConfig,
    memory_arithmetic,
    sandbox_memory_limit,
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
)
from orchestrator.config.sizes import (
    MIN_MEMORY,
    MIN_MEMORY_TEXT,
    ByteSize,
    human_bytes,
    parse_bytes,
)
from orchestrator.config.swarm import SwarmConfig

__all__ = [
    "DEFAULT_PRICES",
    "MIN_MEMORY",
    "MIN_MEMORY_TEXT",
    "NOT_CONFIG_VARIABLES",
    "AgentConfig",
    "ApiConfig",
    "ApiToken",
    "ByteSize",
    "CodeExecutionConfig",
    "Config",
    "DesktopConfig",
    "EditorConfig",
    "EngineConfig",
    "ImagesConfig",
    "LimitsConfig",
    "LoadedConfig",
    "LoggingConfig",
    "MemoryConfig",
    "ModelPrice",
    "PoolConfig",
    "ResilienceConfig",
    "SandboxConfig",
    "SessionConfig",
    "SwarmConfig",
    "ToolsConfig",
    "explain_config",
    "human_bytes",
    "load_config",
    "memory_arithmetic",
    "normalize_base_url",
    "parse_bytes",
    "sandbox_memory_limit",
]
