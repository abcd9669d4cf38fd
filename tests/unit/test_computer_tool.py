"""The computer tool: versions, definitions and input validation (no desktop needed).

Bad input must come back as an ``is_error`` result that says what is wrong
and what is valid, decided before anything reaches a sandbox; the runs
against a real desktop are in tests/integration/test_desktop.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.config import Config, DesktopConfig
from orchestrator.tools.base import Resource, ToolError
from orchestrator.tools.computer import ACTIONS, ComputerInput, ComputerTool
from orchestrator.tools.registry import default_registry

V1, V2, V3 = "computer_20241022", "computer_20250124", "computer_20251124"


def _parse(raw: dict[str, Any], version: str = V3, **config: Any) -> ComputerInput:
    tool = ComputerTool(DesktopConfig(**config))
    params = tool.parse(version, raw)
    assert isinstance(params, ComputerInput)
    return params


def _error(raw: dict[str, Any], version: str = V3, **config: Any) -> str:
    with pytest.raises(ToolError) as info:
        _parse(raw, version, **config)
    return str(info.value)


@pytest.mark.parametrize(
    ("model", "tool_type", "beta"),
    [
        ("claude-sonnet-4-6", V3, "computer-use-2025-11-24"),
        ("claude-opus-4-5-20251101", V3, "computer-use-2025-11-24"),
        ("claude-sonnet-4-5", V2, "computer-use-2025-01-24"),
        ("claude-3-7-sonnet-latest", V2, "computer-use-2025-01-24"),
        ("claude-3-5-sonnet-20241022", V1, "computer-use-2024-10-22"),
    ],
)
def test_each_model_gets_its_version_and_beta_flag(model: str, tool_type: str, beta: str) -> None:
    registry = default_registry(Config())
    params, betas = registry.definitions(model, ["computer"])
    assert params[0]["type"] == tool_type
    assert params[0]["name"] == "computer"
    assert betas == [beta]
    assert ("enable_zoom" in params[0]) == (tool_type == V3)


def test_the_definition_advertises_the_scaled_screen() -> None:
    registry = default_registry(Config())
    params, _ = registry.definitions("claude-sonnet-4-6", ["computer"])
    assert params[0]["display_width_px"] == 1024
    assert params[0]["display_height_px"] == 768
    wide = Config()
    wide.desktop.width, wide.desktop.height = 1920, 1080
    params, _ = default_registry(wide).definitions("claude-sonnet-4-6", ["computer"])
    assert (params[0]["display_width_px"], params[0]["display_height_px"]) == (1366, 768)


def test_session_options_override_the_definition() -> None:
    registry = default_registry(Config())
    params, _ = registry.definitions(
        "claude-sonnet-4-5",
        ["computer"],
        computer={"display_width_px": 1280, "display_height_px": 800, "display_number": 1},
    )
    assert params[0] == {
        "type": V2,
        "name": "computer",
        "display_width_px": 1280,
        "display_height_px": 800,
        "display_number": 1,
    }


def test_zoom_is_only_advertised_when_enabled() -> None:
    tool = ComputerTool(DesktopConfig(enable_zoom=False))
    assert "enable_zoom" not in tool.definition(V3)
    # Advertising zoom that parse() would refuse (or the reverse) is an error, not a lie.
    with pytest.raises(ValueError, match=r"desktop\.enable_zoom = false"):
        tool.definition(V3, enable_zoom=True)
    enabled = ComputerTool(DesktopConfig(enable_zoom=True))
    assert enabled.definition(V3)["enable_zoom"] is True
    assert "enable_zoom" not in enabled.definition(V2, enable_zoom=True)


def test_a_modifier_on_a_drag_is_refused_before_2025() -> None:
    raw = {"action": "left_click_drag", "coordinate": [5, 5], "text": "shift"}
    assert "text is not accepted for left_click_drag" in _error(raw, V1)


def test_versions_add_actions() -> None:
    assert set(ACTIONS[V1]) < set(ACTIONS[V2]) < set(ACTIONS[V3])
    assert "zoom" in ACTIONS[V3]
    assert {"scroll", "hold_key", "wait", "triple_click", "left_mouse_down"} <= set(ACTIONS[V2])


def test_an_unknown_action_lists_the_valid_ones_for_that_version() -> None:
    message = _error({"action": "scroll", "scroll_direction": "up", "scroll_amount": 1}, V1)
    assert "unknown action 'scroll' for computer_20241022" in message
    assert "later version" in message
    assert ", ".join(ACTIONS[V1]) in message
    message = _error({"action": "teleport"}, V2)
    assert ", ".join(ACTIONS[V2]) in message


def test_zoom_needs_the_newest_version_and_enable_zoom() -> None:
    assert "zoom needs computer_20251124 with enable_zoom" in _error(
        {"action": "zoom", "region": [0, 0, 10, 10]}, V2
    )
    message = _error({"action": "zoom", "region": [0, 0, 10, 10]}, V3, enable_zoom=False)
    assert "zoom is not enabled" in message
    assert "desktop.enable_zoom" in message
    assert _parse({"action": "zoom", "region": [0, 0, 10, 10]}).region == [0, 0, 10, 10]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"action": "key"}, "text is required for key"),
        ({"action": "type"}, "text is required for type"),
        ({"action": "mouse_move"}, "coordinate is required for mouse_move"),
        ({"action": "left_click_drag"}, "coordinate is required for left_click_drag"),
        ({"action": "scroll", "scroll_amount": 3}, "scroll_direction is required for scroll"),
        ({"action": "hold_key", "text": "shift"}, "duration is required for hold_key"),
        ({"action": "wait"}, "duration is required for wait"),
        ({"action": "zoom"}, "region is required for zoom"),
    ],
)
def test_missing_fields_say_what_to_give(raw: dict[str, Any], expected: str) -> None:
    assert expected in _error(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"action": "screenshot", "coordinate": [1, 2]},
            "coordinate is not accepted for screenshot",
        ),
        ({"action": "type", "text": "x", "coordinate": [1, 2]}, "coordinate is not accepted"),
        (
            {"action": "left_mouse_down", "coordinate": [1, 2]},
            "move the mouse there first with mouse_move",
        ),
        ({"action": "mouse_move", "coordinate": [1, 2, 3]}, "coordinate must be [x, y]"),
        ({"action": "mouse_move", "coordinate": [-1, 2]}, "two non-negative integers"),
        ({"action": "zoom", "region": [10, 10, 5, 20]}, "0 <= x0 < x1"),
        ({"action": "zoom", "region": [0, 0, 10]}, "region must be [x0, y0, x1, y1]"),
        ({"action": "wait", "duration": 101}, "between 0 and 100 seconds"),
        ({"action": "wait", "duration": -1}, "between 0 and 100 seconds"),
        ({"action": "key", "text": "ctrl+"}, "empty key name"),
        (
            {"action": "scroll", "scroll_direction": "up", "scroll_amount": 1000},
            "scroll_amount must be at most",
        ),
    ],
)
def test_bad_fields_are_named(raw: dict[str, Any], expected: str) -> None:
    assert expected in _error(raw)


def test_clicks_take_modifiers_from_2025_01_on() -> None:
    assert _parse({"action": "left_click", "coordinate": [5, 5], "text": "ctrl"}, V2).text == "ctrl"
    assert "text is not accepted for left_click" in _error(
        {"action": "left_click", "text": "ctrl"}, V1
    )


def test_reads_share_the_display_and_actions_take_it() -> None:
    tool = ComputerTool()
    assert tool.resource(_parse({"action": "screenshot"})) == Resource("display", shared=True)
    assert tool.resource(_parse({"action": "cursor_position"})).shared
    click = _parse({"action": "left_click", "coordinate": [1, 1]})
    assert tool.resource(click) == Resource("display", shared=False)


def test_long_actions_get_longer_deadlines() -> None:
    tool = ComputerTool()
    short = tool.timeout(_parse({"action": "left_click"}))
    assert tool.timeout(_parse({"action": "wait", "duration": 50})) >= short + 50
    assert tool.timeout(_parse({"action": "type", "text": "x" * 20_000})) > short + 20


async def test_bad_calls_are_error_results_beside_good_ones(orch: Orchestrator) -> None:
    """Through the real router: each bad call is an is_error result, the batch completes."""
    async with orch.session() as session:
        results = await session.run_tools(
            [
                {"type": "tool_use", "id": "t1", "name": "computer", "input": {"action": "fly"}},
                {"type": "tool_use", "id": "t2", "name": "computer", "input": {"action": "key"}},
                {"type": "tool_use", "id": "t3", "name": "bash", "input": {"command": "echo ok"}},
                {
                    "type": "tool_use",
                    "id": "t4",
                    "name": "computer",
                    "input": {"action": "screenshot"},
                },
            ],
            tool_types={"computer": V1},
        )
    assert results[0]["is_error"] is True
    assert "valid actions are: " + ", ".join(ACTIONS[V1]) in results[0]["content"]
    assert "text is required for key" in results[1]["content"]
    assert results[2].get("is_error") is not True
    assert results[2]["content"][0]["text"] == "ok"
    # A code-runner session has no screen: the call says so instead of failing obscurely.
    assert results[3]["is_error"] is True
    assert "has no desktop" in results[3]["content"]
    assert "image='desktop'" in results[3]["content"]
