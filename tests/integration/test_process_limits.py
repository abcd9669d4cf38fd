"""The pids limit means what the user set, whatever the runtime.

Under runc the engine's pids cgroup holds the user's processes; under gVisor
(``SBX_SANDBOX__RUNTIME=runsc``) it holds the gVisor kernel, which spends
about ten host tasks per sandboxed process, so the guest enforces the limit
inside and the engine's is raised by the runtime's overhead.  Either way: many
background processes work, a fork bomb meets the session's limit and ends in
a contained timeout, and the sandbox keeps serving.
"""

from __future__ import annotations

import docker

from orchestrator import Orchestrator
from orchestrator.backends.docker.host_config import (
    GVISOR_BASE_TASKS,
    GVISOR_TASKS_PER_PROCESS,
)
from orchestrator.errors import SandboxLost

from .conftest import GVISOR, IMAGE


async def test_sixty_background_processes_run_and_the_sandbox_keeps_serving(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        r = await s.exec("for i in $(seq 60); do sleep 60 & done; pgrep -c -x sleep", timeout=30)
        assert r.exit_code == 0 and r.stdout == b"60\n", r
        assert (await s.exec("echo still here")).stdout == b"still here\n"
        assert s.state == "ready"


async def test_a_fork_bomb_meets_the_sessions_pids_limit_and_times_out_contained(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False, pids_limit=128) as s:
        r = await s.exec("bomb() { bomb | bomb & }; bomb; sleep 30", timeout=6)
        assert r.timed_out and r.exit_code in (128 + 15, 128 + 9), r  # TERM, or KILL after grace
        assert b"Resource temporarily unavailable" in r.stderr, r.stderr[-500:]
        # The same sandbox serves on: the bomb's processes went with its call.  Under
        # gVisor the gVisor kernel itself may die after a bomb (exit code 2: it could not
        # make a thread; README, "Under gVisor"): then the call fails typed, naming it,
        # and the session is crashed -- contained, never a hang or a host failure.
        lost: SandboxLost | None = None
        try:
            after = await s.exec("echo alive; pgrep -c -u sandbox bash || true", timeout=20)
        except SandboxLost as exc:
            if not GVISOR:
                raise
            lost = exc
        if lost is not None:
            assert "exit code 2" in str(lost) and s.state == "crashed", lost
            return
        assert after.stdout_text.splitlines()[0] == "alive", after
        assert s.state == "ready"


async def test_the_engine_holds_the_users_limits_or_the_runtimes_overhead_on_top(
    orch: Orchestrator, docker_client: docker.DockerClient
) -> None:
    async with orch.session(image=IMAGE, memories=False, pids_limit=100) as s:
        assert s.sandbox_id is not None
        host = docker_client.api.inspect_container(s.sandbox_id)["HostConfig"]
        inside = (await s.exec("ulimit -u")).stdout_text.strip()
        if GVISOR:
            assert host["PidsLimit"] == GVISOR_BASE_TASKS + GVISOR_TASKS_PER_PROCESS * 100
            assert inside == "100"  # the guest's RLIMIT_NPROC: what the user set
        else:
            assert host["PidsLimit"] == 100  # the engine's pids cgroup holds the user's
            assert inside != "100"
