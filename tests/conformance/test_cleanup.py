"""Nothing of a session outlives it: closed, cut off, or its supervisor killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import trio

from orchestrator import Config, Orchestrator
from orchestrator.backends.base import LABEL_SESSION
from orchestrator.backends.registry import make_backend
from orchestrator.supervisor import Supervisor

from .conftest import IMAGE, running, sandboxes, wait_until_none


async def test_closing_a_session_removes_its_sandbox(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        assert await sandboxes(orch.backend, {LABEL_SESSION: s.id}) == [s.sandbox_id]
        assert (await s.exec("echo hi")).stdout == b"hi\n"
    assert await wait_until_none(orch.backend, {LABEL_SESSION: s.id}) == []


async def test_a_cut_stream_ends_the_guest(orch: Orchestrator) -> None:
    s = await orch.open_session(image=IMAGE, memories=False)
    try:
        await s.client.channel.aclose()  # the stream only: no remove call
        with trio.fail_after(60):
            while await running(orch.backend, {LABEL_SESSION: s.id}):
                await trio.sleep(0.2)
    finally:
        await s.close()
    assert await wait_until_none(orch.backend, {LABEL_SESSION: s.id}) == []


async def test_a_killed_supervisor_leaves_nothing_after_gc(config: Config) -> None:
    script = textwrap.dedent(
        f"""
        import trio
        from orchestrator import Orchestrator, load_config
        async def main():
            config = load_config()
            config.engine.backend = {config.engine.backend!r}
            async with Orchestrator(config) as orch:
                sessions = [
                    await orch.open_session(image={IMAGE!r}, memories=False) for _ in range(3)
                ]
                await sessions[0].exec("sleep 1000 &")
                print(" ".join(s.id for s in sessions), flush=True)
                await trio.sleep_forever()
        trio.run(main)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=os.environ)
    try:
        assert proc.stdout is not None
        with trio.fail_after(180):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        session_ids = line.decode().split()
        assert len(session_ids) == 3
    finally:
        proc.kill()
        proc.wait()
    backend = make_backend(config)
    try:
        for session_id in session_ids:
            # The guest goes when its supervisor does (the dead man's switch)...
            with trio.fail_after(60):
                while await running(backend, {LABEL_SESSION: session_id}):
                    await trio.sleep(0.2)
        # ...and whatever an engine keeps of it, the reaper (`sbx gc`) removes.
        await Supervisor(config, backend).reap_orphans()
        for session_id in session_ids:
            assert await wait_until_none(backend, {LABEL_SESSION: session_id}) == []
    finally:
        await backend.aclose()
