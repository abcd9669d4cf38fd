"""The text editor tool in real code-runner sandboxes: the whole table of cases, and the limits."""

from __future__ import annotations

import secrets

import pytest

from orchestrator import Config, Orchestrator

from ..editor_cases import CASES, Case, run_case
from ..toolcalls import result_text
from .conftest import IMAGE


def _use(tool_input: dict[str, object]) -> dict[str, object]:
    return {
        "type": "tool_use",
        "id": f"toolu_{secrets.token_hex(6)}",
        "name": "str_replace_based_edit_tool",
        "input": tool_input,
    }


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_editor(orch: Orchestrator, case: Case) -> None:
    async with orch.session(image=IMAGE, memories=False) as session:
        await session.mkdir("/workspace/case")
        await run_case(session, "/workspace/case", case)


async def test_edits_keep_mode_and_leave_no_temporary_files(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as session:
        await session.write_file("/workspace/run.sh", b"#!/bin/sh\necho one\n", mode=0o755)
        [ok] = await session.run_tools(
            [
                _use(
                    {
                        "command": "str_replace",
                        "path": "/workspace/run.sh",
                        "old_str": "one",
                        "new_str": "two",
                    }
                )
            ]
        )
        [bad] = await session.run_tools(
            [
                _use(
                    {
                        "command": "str_replace",
                        "path": "/workspace/run.sh",
                        "old_str": "absent",
                        "new_str": "x",
                    }
                )
            ]
        )
        ran = await session.exec(["sh", "/workspace/run.sh"])
        names = [entry.name for entry in await session.list_files("/workspace")]
        info = await session.stat("/workspace/run.sh")
    assert not ok.get("is_error") and bad.get("is_error")
    assert ran.stdout == b"two\n"
    assert info.mode == 0o755
    assert names == ["run.sh"]  # no temp file from the edit that worked or the one that failed


async def test_symlinked_file_is_edited_through_the_link(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as session:
        await session.write_file("/workspace/real.txt", b"a = 1\n")
        await session.exec(["ln", "-s", "real.txt", "/workspace/link.txt"])
        [result] = await session.run_tools(
            [
                _use(
                    {
                        "command": "str_replace",
                        "path": "/workspace/link.txt",
                        "old_str": "1",
                        "new_str": "2",
                    }
                )
            ]
        )
        link = await session.stat("/workspace/link.txt", follow_symlinks=False)
        data = await session.read_file("/workspace/real.txt")
    assert not result.get("is_error"), result_text(result)
    assert link.type == "symlink"
    assert data == b"a = 2\n"


async def test_a_symlink_out_of_the_sandbox_roots_is_refused(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as session:
        await session.exec(["ln", "-s", "/etc/passwd", "/workspace/pw"])
        [result] = await session.run_tools(
            [
                _use(
                    {
                        "command": "str_replace",
                        "path": "/workspace/pw",
                        "old_str": "root",
                        "new_str": "toor",
                    }
                )
            ]
        )
    assert result.get("is_error")
    assert "outside the allowed directories" in result_text(result)


async def test_files_over_the_size_cap_are_refused(config: Config) -> None:
    config.editor.max_file_bytes = 64 << 10
    async with Orchestrator(config) as orch, orch.session(image=IMAGE, memories=False) as session:
        await session.write_file("/workspace/big.txt", b"x" * (100 << 10) + b"\n")
        await session.write_file("/workspace/small.txt", b"y\n")
        [view] = await session.run_tools([_use({"command": "view", "path": "/workspace/big.txt"})])
        [grow] = await session.run_tools(
            [
                _use(
                    {
                        "command": "str_replace",
                        "path": "/workspace/small.txt",
                        "old_str": "y",
                        "new_str": "z" * (70 << 10),
                    }
                )
            ]
        )
        small = await session.read_file("/workspace/small.txt")
    assert view.get("is_error")
    assert "over the editor's limit of 65536 bytes" in result_text(view)
    assert grow.get("is_error")
    assert "Nothing was written" in result_text(grow)
    assert small == b"y\n"


async def test_max_characters_clips_a_view_and_says_where_to_continue(config: Config) -> None:
    config.editor.max_characters = 2000
    async with Orchestrator(config) as orch, orch.session(image=IMAGE, memories=False) as session:
        lines = "".join(f"row {n:04d} " + "." * 40 + "\n" for n in range(1, 501))
        await session.write_file("/workspace/long.txt", lines)
        [view] = await session.run_tools([_use({"command": "view", "path": "/workspace/long.txt"})])
        params, _ = orch.router.registry.definitions("claude-sonnet-4-6", ["text_editor"])
    text = result_text(view)
    assert params == [
        {
            "type": "text_editor_20250728",
            "name": "str_replace_based_edit_tool",
            "max_characters": 2000,
        }
    ]
    assert not view.get("is_error")
    assert len(text) <= 2000
    assert "<response clipped>" in text
    shown = [line for line in text.splitlines() if line.strip().split("\t")[0].isdigit()]
    last = int(shown[-1].split("\t")[0])
    assert f"view_range` [{last + 1}, -1]" in text
    assert shown[0].startswith("     1\trow 0001")


async def test_an_edit_that_fails_while_writing_leaves_the_file_whole(
    orch: Orchestrator,
) -> None:
    """A full disk half-way through the write: the old file stays, and no temporary does."""
    original = b"head\n" + b"x" * 600_000 + b"\ntail\n"
    async with orch.session(
        image=IMAGE, memories=False, tmpfs_sizes={"/workspace": "1m"}
    ) as session:
        await session.write_file("/workspace/big.txt", original)
        [failed] = await session.run_tools(
            [
                _use(
                    {
                        "command": "str_replace",
                        "path": "/workspace/big.txt",
                        "old_str": "tail",
                        "new_str": "y" * 500_000,  # 1.1 MB new beside the 0.6 MB old
                    }
                )
            ]
        )
        assert failed.get("is_error") is True, failed
        assert "space" in result_text(failed).lower(), result_text(failed)
        assert await session.read_file("/workspace/big.txt") == original
        listing = await session.exec(["ls", "-a", "/workspace"])
    assert listing.stdout.split() == [b".", b"..", b"big.txt"]
