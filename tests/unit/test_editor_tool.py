"""The text editor tool against the real guest (run as a local process by the fake backend)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator
from orchestrator.tools import default_registry

from ..editor_cases import CASES, Case, run_case
from ..toolcalls import call, use


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_editor(orch: Orchestrator, fake_config: Config, case: Case) -> None:
    ws = os.path.join(fake_config.sandbox.allowed_roots[0], "case")
    Path(ws).mkdir()
    async with orch.session() as session:
        await run_case(session, ws, case)


async def test_the_older_name_gets_the_older_version_without_being_told(
    orch: Orchestrator, fake_config: Config
) -> None:
    path = os.path.join(fake_config.sandbox.allowed_roots[0], "old.txt")
    async with orch.session() as session:
        await session.write_file(path, b"a\n")
        for tool_input in (
            {"command": "str_replace", "path": path, "old_str": "a", "new_str": "b"},
            {"command": "undo_edit", "path": path},
        ):
            err, text, _ = await call(session, "str_replace_editor", tool_input)
            assert not err, text
        data = await session.read_file(path)
    assert data == b"a\n"


def test_each_version_is_advertised_under_its_own_name() -> None:
    config = Config()
    config.editor.max_characters = 12000
    registry = default_registry(config)
    newest, _ = registry.definitions("claude-sonnet-4-6", ["text_editor"])
    legacy, betas = registry.definitions("claude-3-7-sonnet-20250219", ["text_editor"])
    assert newest == [
        {
            "type": "text_editor_20250728",
            "name": "str_replace_based_edit_tool",
            "max_characters": 12000,
        }
    ]
    assert legacy == [{"type": "text_editor_20250124", "name": "str_replace_editor"}]
    assert betas == ["computer-use-2025-01-24"]


async def test_replacing_a_text_by_itself_succeeds_and_changes_nothing(
    orch: Orchestrator, fake_config: Config
) -> None:
    path = os.path.join(fake_config.sandbox.allowed_roots[0], "same.txt")
    async with orch.session() as session:
        await session.write_file(path, b"keep\r\nme")
        before = os.stat(path).st_mtime_ns
        same = {"command": "str_replace", "path": path, "old_str": "keep", "new_str": "keep"}
        err, text, _ = await call(session, "str_replace_editor", same)
        assert not err, text
        assert "has been edited" in text
        assert os.stat(path).st_mtime_ns == before  # not even rewritten
        err, text, _ = await call(
            session, "str_replace_editor", {"command": "undo_edit", "path": path}
        )
        assert err and "No edit history" in text  # nothing to undo: nothing was done
    assert Path(path).read_bytes() == b"keep\r\nme"


def test_max_characters_is_advertised_from_the_setting_that_enforces_it() -> None:
    config = Config()
    config.editor.max_characters = 5000
    tool = default_registry(config).get("str_replace_based_edit_tool")
    assert tool is not None
    assert tool.definition("text_editor_20250728")["max_characters"] == 5000
    assert "max_characters" not in tool.definition("text_editor_20250429", max_characters=5000)
    with pytest.raises(ValueError, match=r"editor\.max_characters"):
        tool.definition("text_editor_20250728", max_characters=100)


async def test_many_edits_of_one_file_in_one_batch_apply_in_order(
    orch: Orchestrator, fake_config: Config
) -> None:
    path = os.path.join(fake_config.sandbox.allowed_roots[0], "batch.txt")
    async with orch.session() as session:
        await session.write_file(path, b"")
        blocks = [
            use(
                "str_replace_based_edit_tool",
                {"command": "insert", "path": path, "insert_line": n, "insert_text": f"line {n}"},
            )
            for n in range(20)
        ]
        results = await session.run_tools(blocks)
        data = await session.read_file(path)
    assert not any(r.get("is_error") for r in results)
    assert data == "".join(f"line {n}\n" for n in range(20)).encode()
