"""Nothing outlives its session: no container, process, thread or temporary file."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import docker
import trio

from orchestrator import Config, Orchestrator

from ..toolcalls import use
from .conftest import IMAGE, containers_of_session


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.update(int(child) for child in children)
    return found


async def test_a_busy_session_leaves_nothing_behind(
    config: Config, docker_client: docker.DockerClient, tmp_path: Path, monkeypatch
) -> None:
    # A temporary directory of this test's own: other programs on the machine write to /tmp.
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setenv("TMPDIR", str(private))
    temp_before = set(os.listdir(tempfile.gettempdir()))
    threads_before = {thread.ident for thread in threading.enumerate()}
    children_before = _children(os.getpid())
    async with Orchestrator(config) as orch, orch.session(image=IMAGE, memories=False) as s:
        session_id = s.id
        await s.exec("echo hi; sleep 0.1 & wait")
        await s.shell("cd /tmp && export A=1")
        await s.write_file("/workspace/a.bin", os.urandom(1 << 20))
        assert len(await s.read_file("/workspace/a.bin")) == 1 << 20
        results = await s.run_tools(
            [
                use("bash", {"command": "echo tool"}),
                use("code_execution", {"code": "sum(range(10))"}),
                use("str_replace_based_edit_tool", {"command": "view", "path": "/workspace"}),
            ]
        )
        assert not any(r.get("is_error") for r in results), results
        async with s.exec_stream("seq 1 1000") as stream:
            async for _ in stream:
                pass
    with trio.fail_after(10):
        while containers_of_session(docker_client, session_id):
            await trio.sleep(0.1)
    leftover_threads = [
        thread
        for thread in threading.enumerate()
        if thread.ident not in threads_before and not thread.name.startswith("Trio thread")
    ]
    assert leftover_threads == []  # trio's idle worker cache is the only thread allowed
    assert set(os.listdir(tempfile.gettempdir())) - temp_before == set()
    assert _children(os.getpid()) - children_before == set()
