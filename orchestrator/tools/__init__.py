"""Claude's client tools, implemented against a session's sandbox."""

from orchestrator.tools.base import Resource, Tool, ToolContext, ToolError, ToolOutput
from orchestrator.tools.registry import ToolRegistry, default_registry
from orchestrator.tools.versions import TOOL_VERSIONS, betas_for, tool_type_for_model

__all__ = [
    "TOOL_VERSIONS",
    "Resource",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "ToolRegistry",
    "betas_for",
    "default_registry",
    "tool_type_for_model",
]
