"""The one table of Claude's client-tool versions, names and beta flags.

Which generation of a tool to advertise depends on the model; which beta
flag to send depends on the tool version.  Both live here and nowhere else,
so adding a model or a tool version is a one-line change.  Facts are those
of the published tool docs and the ``anthropic`` SDK's ``types.beta``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CODE_EXECUTION_TYPE",
    "CONTEXT_MANAGEMENT_BETA",
    "DEFAULT_MODEL",
    "GENERATION",
    "TOOL_VERSIONS",
    "ToolVersion",
    "betas_for",
    "supports_context_editing",
    "supports_thinking",
    "tool_type_for_model",
]

DEFAULT_MODEL = "claude-sonnet-4-6"


@dataclass(frozen=True)
class ToolVersion:
    type: str
    """The tool's ``type`` string, e.g. ``bash_20250124``."""
    name: str
    """The ``name`` Claude calls it by."""
    family: str
    """Our tool family: bash, computer, text_editor, memory, code_execution."""
    beta: str | None
    """The beta flag it needs, if any; ``GENERATION`` means the computer-use flag of the
    model's generation (bash and the legacy editors ride on it)."""


GENERATION = "generation"
CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
"""The beta flag of the memory tool and of context editing (``context_management``)."""

CODE_EXECUTION_TYPE = "custom"
"""``code_execution`` is our own client tool, sent as a custom tool (name, description,
input schema).  Anthropic's ``code_execution_*`` types are server tools that run in
Anthropic's cloud, so none of them is in the table below."""
_CU_2024 = "computer-use-2024-10-22"
_CU_2025 = "computer-use-2025-01-24"
_CU_2511 = "computer-use-2025-11-24"

TOOL_VERSIONS: dict[str, ToolVersion] = {
    v.type: v
    for v in (
        ToolVersion("bash_20241022", "bash", "bash", GENERATION),
        ToolVersion("bash_20250124", "bash", "bash", GENERATION),
        ToolVersion("computer_20241022", "computer", "computer", _CU_2024),
        ToolVersion("computer_20250124", "computer", "computer", _CU_2025),
        ToolVersion("computer_20251124", "computer", "computer", _CU_2511),
        ToolVersion("text_editor_20241022", "str_replace_editor", "text_editor", GENERATION),
        ToolVersion("text_editor_20250124", "str_replace_editor", "text_editor", GENERATION),
        ToolVersion("text_editor_20250429", "str_replace_based_edit_tool", "text_editor", None),
        ToolVersion("text_editor_20250728", "str_replace_based_edit_tool", "text_editor", None),
        ToolVersion("memory_20250818", "memory", "memory", CONTEXT_MANAGEMENT_BETA),
    )
}

# Model id prefix -> (computer, text editor, bash) versions, most specific first.
_GENERATIONS: tuple[tuple[str, tuple[str, str, str]], ...] = (
    ("claude-3-5-sonnet", ("computer_20241022", "text_editor_20241022", "bash_20241022")),
    ("claude-3-7-sonnet", ("computer_20250124", "text_editor_20250124", "bash_20250124")),
    ("claude-opus-4-5", ("computer_20251124", "text_editor_20250728", "bash_20250124")),
    ("claude-opus-4-6", ("computer_20251124", "text_editor_20250728", "bash_20250124")),
    ("claude-sonnet-4-6", ("computer_20251124", "text_editor_20250728", "bash_20250124")),
    ("claude-opus-4-1", ("computer_20250124", "text_editor_20250728", "bash_20250124")),
    ("claude-sonnet-4-5", ("computer_20250124", "text_editor_20250728", "bash_20250124")),
    ("claude-haiku-4-5", ("computer_20250124", "text_editor_20250728", "bash_20250124")),
    ("claude-opus-4", ("computer_20250124", "text_editor_20250728", "bash_20250124")),
    ("claude-sonnet-4", ("computer_20250124", "text_editor_20250728", "bash_20250124")),
)
_NEWEST = ("computer_20251124", "text_editor_20250728", "bash_20250124")
_FAMILY_INDEX = {"computer": 0, "text_editor": 1, "bash": 2}


def tool_type_for_model(family: str, model: str) -> str:
    """The tool version to advertise to ``model`` for a tool family.

    Unknown (newer) models get the newest versions; families with a single
    version (memory, code execution) are not generation-bound.
    """
    if family == "memory":
        return "memory_20250818"
    if family == "code_execution":
        return CODE_EXECUTION_TYPE
    index = _FAMILY_INDEX.get(family)
    if index is None:
        raise KeyError(f"no versioned Anthropic tool family {family!r}")
    for prefix, versions in _GENERATIONS:
        if model.startswith(prefix):
            return versions[index]
    return _NEWEST[index]


def betas_for(tool_types: list[str], model: str) -> list[str]:
    """The beta flags a set of tool versions needs with ``model``, deduplicated, in order."""
    generation = TOOL_VERSIONS[tool_type_for_model("computer", model)].beta
    flags: list[str] = []
    for tool_type in tool_types:
        version = TOOL_VERSIONS.get(tool_type)
        if version is None or not version.beta:
            continue
        flag = generation if version.beta == GENERATION else version.beta
        if flag and flag not in flags:
            flags.append(flag)
    return flags


# Models without extended thinking, and without the context-editing beta (by id prefix);
# newer models than this table knows have both.
_NO_THINKING = ("claude-3-5-", "claude-3-opus", "claude-3-sonnet", "claude-3-haiku")
_NO_CONTEXT_EDITING = ("claude-3-",)


def supports_thinking(model: str) -> bool:
    """Whether ``model`` takes ``thinking={"type": "enabled", "budget_tokens": N}``
    (Claude 3.7 Sonnet and every Claude 4 model)."""
    return not model.startswith(_NO_THINKING)


def supports_context_editing(model: str) -> bool:
    """Whether ``model`` takes ``context_management`` edits (the Claude 4 models)."""
    return not model.startswith(_NO_CONTEXT_EDITING)
