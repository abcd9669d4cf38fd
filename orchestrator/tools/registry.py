"""The tools a router knows, by name, and how to advertise them to a model.

A registry maps Claude's tool names to implementations and each model to
the tool versions (and beta flags) it expects.  The default registry holds
every tool this installation implements; tests and embedders make their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.config import Config
from orchestrator.tools.base import Tool
from orchestrator.tools.versions import TOOL_VERSIONS, betas_for, tool_type_for_model

__all__ = ["ToolRegistry", "default_registry"]


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._by_name: dict[str, Tool] = {}
        self._by_family: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add a tool; a later registration of the same name replaces the earlier one."""
        self._by_name[tool.name] = tool
        self._by_family[tool.family] = tool
        for tool_type in tool.types:
            version = TOOL_VERSIONS.get(tool_type)
            if version is not None and version.name != tool.name:
                # Older versions go by another name (str_replace_editor): route it too.
                self._by_name[version.name] = tool
        for alias in getattr(tool, "aliases", ()):
            self._by_name[alias] = tool  # a name it is advertised under instead (code_execution)

    def extended(self, tools: Iterable[Tool]) -> ToolRegistry:
        """A copy of this registry with ``tools`` added (this one is left as it is)."""
        copy = ToolRegistry()
        copy._by_name = dict(self._by_name)
        copy._by_family = dict(self._by_family)
        for tool in tools:
            copy.register(tool)
        return copy

    def get(self, name: str) -> Tool | None:
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def families(self) -> list[str]:
        return sorted(self._by_family)

    def definitions(
        self, model: str, families: Sequence[str] | None = None, **options: Any
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Tool parameters and beta flags for ``model``.

        ``families`` picks tools (``bash``, ``computer``, ...; default all);
        ``options`` are per-family tool parameters, e.g.
        ``computer={"display_width_px": 1024, ...}``.
        """
        chosen = list(families) if families is not None else self.families()
        unknown = [family for family in chosen if family not in self._by_family]
        if unknown:
            raise KeyError(
                f"unknown tool(s) {', '.join(unknown)}; available: {', '.join(self.families())}"
            )
        params: list[dict[str, Any]] = []
        types: list[str] = []
        for family in chosen:
            tool = self._by_family[family]
            try:
                tool_type = tool_type_for_model(family, model)
            except KeyError:
                tool_type = tool.types[0]
            if tool_type not in tool.types:
                tool_type = tool.types[0]
            types.append(tool_type)
            params.append(tool.definition(tool_type, **options.get(family, {})))
        return params, betas_for(types, model)


def default_registry(config: Config) -> ToolRegistry:
    """Every tool this installation implements, configured from ``config.tools``."""
    from orchestrator.tools.bash import BashTool
    from orchestrator.tools.code_execution import CodeExecutionTool
    from orchestrator.tools.computer import ComputerTool
    from orchestrator.tools.editor import TextEditorTool
    from orchestrator.tools.memory import MemoryTool

    return ToolRegistry(
        [
            BashTool(
                timeout=config.tools.bash_timeout,
                max_output_chars=config.tools.max_output_chars,
            ),
            TextEditorTool(
                undo_depth=config.editor.undo_depth,
                undo_max_bytes=config.editor.undo_max_bytes,
                max_file_bytes=config.editor.max_file_bytes,
                max_characters=config.editor.max_characters,
                max_output_chars=config.tools.max_output_chars,
                workdir=config.sandbox.workdir,
            ),
            CodeExecutionTool(
                tool_name=config.code_execution.tool_name,
                timeout=config.code_execution.timeout,
                outputs_dir=config.code_execution.outputs_dir,
                grace=config.session.kill_grace,
                max_output_chars=config.tools.max_output_chars,
            ),
            MemoryTool(
                max_bytes=config.memory.max_bytes,
                max_file_bytes=config.editor.max_file_bytes,
                max_output_chars=config.tools.max_output_chars,
            ),
            ComputerTool(config.desktop),
        ]
    )
