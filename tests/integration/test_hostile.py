"""Hostile workloads in real sandboxes: each ends within a bound, reports the truth, leaves nothing.

The sandboxed code here does what an attacker or a runaway program would;
every test asserts the call ended in time with a true report, and that the
sandbox (or a fresh one) still serves the next call.
"""

from __future__ import annotations

import time

import trio

from orchestrator import Orchestrator

from .conftest import IMAGE


async def test_filling_every_writable_mount_is_enospc_and_the_sandbox_keeps_serving(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memory="256m", memories=False) as s:
        for mount in ("/workspace", "/tmp", "/home/sandbox", "/dev/shm"):
            started = time.monotonic()
            r = await s.exec(
                f"head -c 2G /dev/zero > {mount}/fill; echo rc=$?", timeout=120, max_output=4096
            )
            assert time.monotonic() - started < 60, mount
            assert not r.oom_killed, f"filling {mount} must not kill anything: {r}"
            assert "No space left on device" in r.stderr_text, (mount, r)
            assert r.stdout_text.strip() == "rc=1", (mount, r)
        # Every mount is full at once, and the processes still have their memory.
        alive = await s.exec(["python3", "-c", "x = bytearray(128 << 20); print(len(x))"])
        assert alive.exit_code == 0 and alive.stdout == b"134217728\n", alive
        cleared = await s.exec("rm /workspace/fill /tmp/fill /home/sandbox/fill /dev/shm/fill")
        assert cleared.exit_code == 0, cleared
        after = await s.exec("df --output=used /workspace | tail -1")
        assert int(after.stdout) < 1024, after


async def test_a_session_of_the_default_shape_has_room_for_its_memory_and_its_mounts(
    orch: Orchestrator, docker_client
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        assert s.sandbox_id is not None
        host = docker_client.api.inspect_container(s.sandbox_id)["HostConfig"]
        sandbox = orch.config.sandbox
        expected = sandbox.memory + sum(sandbox.tmpfs_for(sandbox.memory).values())
        assert host["Memory"] == expected + sandbox.shm_size
        assert host["ShmSize"] == sandbox.shm_size
        with trio.fail_after(30):
            df = await s.exec("df -B1 --output=size /workspace | tail -1")
        assert int(df.stdout) == sandbox.tmpfs_for(sandbox.memory)["/workspace"]
