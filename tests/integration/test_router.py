"""Batches of real tools in real sandboxes: what overlaps, what waits, what a cancel leaves."""

from __future__ import annotations

import time

import trio

from orchestrator import Orchestrator

from ..toolcalls import use
from .conftest import IMAGE


async def test_different_tools_in_one_session_overlap(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        # Warm the interpreter so the timing is about the calls, not a first start.
        await s.run_tools([use("code_execution", {"code": "1"})])
        blocks = [
            use("bash", {"command": "sleep 1; echo slept"}),
            use("code_execution", {"code": "import time; time.sleep(1); 'napped'"}),
            use("str_replace_based_edit_tool", {"command": "view", "path": "/workspace"}),
        ]
        started = time.monotonic()
        results = await s.run_tools(blocks)
        elapsed = time.monotonic() - started
    assert [r.get("is_error", False) for r in results] == [False, False, False], results
    assert "slept" in str(results[0]["content"]) and "napped" in str(results[1]["content"])
    assert elapsed < 1.8, f"calls on different resources took {elapsed:.2f} s, not ~1 s"


async def test_cancelling_a_batch_across_tools_and_sessions_leaves_no_process(
    orch: Orchestrator,
) -> None:
    async with (
        orch.session(image=IMAGE, memories=False) as one,
        orch.session(image=IMAGE, memories=False) as two,
    ):
        batch = {
            one.id: [
                use("bash", {"command": "sleep 300 & sleep 301; echo never"}),
                use("code_execution", {"code": "import time; time.sleep(302)"}),
            ],
            two.id: [use("bash", {"command": "sleep 303"})],
        }
        with trio.move_on_after(1.5) as scope:
            await orch.run_tools(batch)
        assert scope.cancelled_caught
        for session in (one, two):
            with trio.fail_after(15):
                while True:
                    ps = await session.exec(["ps", "-eo", "args="])
                    assert ps.exit_code == 0 and b"ps -eo" in ps.stdout, ps
                    left = [line for line in ps.stdout.decode().splitlines() if "sleep 30" in line]
                    if not left:
                        break
                    await trio.sleep(0.2)
        # Both sessions, their shells and the interpreter are still usable afterwards.
        after = await orch.run_tools(
            {
                one.id: [
                    use("bash", {"command": "echo shell-ok"}),
                    use("code_execution", {"code": "'kernel-ok'"}),
                ],
                two.id: [use("bash", {"command": "echo two-ok"})],
            }
        )
    texts = str(after)
    assert "shell-ok" in texts and "kernel-ok" in texts and "two-ok" in texts
