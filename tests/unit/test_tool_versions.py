"""The version table: which tool types and beta flags each model gets."""

from __future__ import annotations

import pytest
from anthropic.types import beta as sdk

from orchestrator.tools.versions import TOOL_VERSIONS, betas_for, tool_type_for_model


@pytest.mark.parametrize(
    ("model", "computer", "editor", "bash", "flag"),
    [
        (
            "claude-3-5-sonnet-20241022",
            "computer_20241022",
            "text_editor_20241022",
            "bash_20241022",
            "computer-use-2024-10-22",
        ),
        (
            "claude-3-7-sonnet-20250219",
            "computer_20250124",
            "text_editor_20250124",
            "bash_20250124",
            "computer-use-2025-01-24",
        ),
        (
            "claude-sonnet-4-5",
            "computer_20250124",
            "text_editor_20250728",
            "bash_20250124",
            "computer-use-2025-01-24",
        ),
        (
            "claude-haiku-4-5-20251001",
            "computer_20250124",
            "text_editor_20250728",
            "bash_20250124",
            "computer-use-2025-01-24",
        ),
        (
            "claude-opus-4-5-20251101",
            "computer_20251124",
            "text_editor_20250728",
            "bash_20250124",
            "computer-use-2025-11-24",
        ),
        (
            "claude-sonnet-4-6",
            "computer_20251124",
            "text_editor_20250728",
            "bash_20250124",
            "computer-use-2025-11-24",
        ),
        (
            "claude-some-future-model",
            "computer_20251124",
            "text_editor_20250728",
            "bash_20250124",
            "computer-use-2025-11-24",
        ),
    ],
)
def test_model_generations(model: str, computer: str, editor: str, bash: str, flag: str) -> None:
    assert tool_type_for_model("computer", model) == computer
    assert tool_type_for_model("text_editor", model) == editor
    assert tool_type_for_model("bash", model) == bash
    assert betas_for([bash], model) == [flag]
    assert betas_for([computer, bash], model) == [flag]


def test_new_editors_need_no_flag_and_memory_has_its_own() -> None:
    assert betas_for(["text_editor_20250728"], "claude-sonnet-4-6") == []
    assert betas_for(["memory_20250818"], "claude-sonnet-4-6") == ["context-management-2025-06-27"]


def test_every_tool_type_matches_the_installed_sdk() -> None:
    for tool_type, version in TOOL_VERSIONS.items():
        stem = "".join(part.capitalize() for part in tool_type.split("_")[:-1])
        date = tool_type.split("_")[-1]
        candidates = [
            f"BetaTool{stem}{date}Param",
            f"BetaTool{stem}Use{date}Param",
            f"Beta{stem}Tool{date}Param",
        ]
        param = next((getattr(sdk, c) for c in candidates if hasattr(sdk, c)), None)
        assert param is not None, f"no SDK type for {tool_type}"
        annotations = " ".join(str(a) for a in param.__annotations__.values())
        assert f"'{tool_type}'" in annotations
        assert f"'{version.name}'" in annotations
