"""Calls every backend must carry: exec, streams, shells, files and Claude's tools.

The integration tests that only need a session are reused as they are: each
runs here once per backend, with this suite's ``orch``.
"""

from __future__ import annotations

from orchestrator import Orchestrator
from tests.integration.test_sandbox import (  # noqa: F401  (collected here, per backend)
    test_binary_file_round_trip,
    test_escapes_are_refused,
    test_exit_codes_streams_and_missing_commands,
    test_files_over_the_cap,
    test_output_streams_in_order,
    test_persistent_shell,
    test_programs_written_in_the_sandbox_can_run,
    test_timeouts_kill_children_and_ignored_term,
)
from tests.toolcalls import call

from .conftest import IMAGE


async def test_claude_tools_run_in_the_sandbox(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        failed, text, _ = await call(
            s, "bash", {"command": "echo tool-$((6 * 7)) > /tmp/t; cat /tmp/t"}
        )
        assert (failed, text.strip()) == (False, "tool-42")
        failed, _, _ = await call(
            s,
            "str_replace_based_edit_tool",
            {"command": "create", "path": "/workspace/a.txt", "file_text": "one\ntwo\n"},
        )
        assert failed is False
        failed, _, _ = await call(
            s,
            "str_replace_based_edit_tool",
            {
                "command": "str_replace",
                "path": "/workspace/a.txt",
                "old_str": "two",
                "new_str": "three",
            },
        )
        assert failed is False
        assert await s.read_file("/workspace/a.txt") == b"one\nthree\n"
        failed, text, _ = await call(s, "bash", {"command": "exit 3"})
        assert "3" in text
