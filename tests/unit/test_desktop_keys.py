"""Key names the way Claude writes them, turned into key steps for the guest."""

from __future__ import annotations

import pytest

from orchestrator.desktop.keys import KeyNameError, combo_steps, hold_steps, parse_combos


def test_xdotool_combinations_and_sequences() -> None:
    assert parse_combos("ctrl+shift+t") == [["Control_L", "Shift_L", "t"]]
    assert parse_combos("ctrl+a Delete") == [["Control_L", "a"], ["Delete"]]
    assert parse_combos("Return") == [["Return"]]


@pytest.mark.parametrize(
    ("written", "keysym"),
    [
        ("enter", "Return"),
        ("ESC", "Escape"),
        ("cmd", "Super_L"),
        ("super", "Super_L"),
        ("pagedown", "Next"),
        ("Page_Down", "Next"),
        ("PgUp", "Prior"),
        ("backspace", "BackSpace"),
        ("f5", "F5"),
        ("F12", "F12"),
        ("ArrowLeft", "Left"),
        ("space", "space"),
        ("KP_Enter", "KP_Enter"),  # a real keysym name passes through
        ("A", "A"),  # single characters are their own keysym (case kept)
    ],
)
def test_aliases_become_keysym_names(written: str, keysym: str) -> None:
    assert parse_combos(written) == [[keysym]]


def test_a_plus_key_can_be_written_literally() -> None:
    assert parse_combos("ctrl++") == [["Control_L", "plus"]]
    assert parse_combos("+") == [["plus"]]


@pytest.mark.parametrize("bad", ["", "   ", "ctrl+", "+a+"])
def test_empty_key_names_are_errors_that_show_the_syntax(bad: str) -> None:
    with pytest.raises(KeyNameError, match="ctrl"):
        parse_combos(bad)


def test_a_combination_presses_in_order_and_releases_in_reverse() -> None:
    steps = combo_steps("ctrl+shift+t")
    assert [(s["key"], s["down"]) for s in steps] == [
        ("Control_L", True),
        ("Shift_L", True),
        ("t", True),
        ("t", False),
        ("Shift_L", False),
        ("Control_L", False),
    ]


def test_held_modifiers_wrap_an_action() -> None:
    down, up = hold_steps("ctrl+shift")
    assert [s["key"] for s in down] == ["Control_L", "Shift_L"]
    assert [s["key"] for s in up] == ["Shift_L", "Control_L"]
    assert all(s["down"] for s in down)
    assert not any(s["down"] for s in up)
    assert hold_steps(None) == ([], [])
