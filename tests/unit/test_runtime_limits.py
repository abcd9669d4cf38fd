"""Where the pids and memory limits are held: the engine under runc, the guest under gVisor."""

from __future__ import annotations

import pytest

from orchestrator import Config
from orchestrator.backends.base import SandboxSpec
from orchestrator.backends.docker.host_config import (
    GVISOR_BASE_TASKS,
    GVISOR_MEMORY_HEADROOM,
    GVISOR_TASKS_PER_PROCESS,
    host_config_for,
)
from orchestrator.sandbox_start import guest_config


def _spec(runtime: str | None) -> SandboxSpec:
    return SandboxSpec(
        image="sbx-code-runner",
        name="n",
        labels={},
        env={},
        memory=512 << 20,
        cpus=1,
        pids_limit=100,
        network=False,
        tmpfs={"/workspace": 256 << 20},
        user="1000:1000",
        workdir="/workspace",
        runtime=runtime,
    )


@pytest.mark.parametrize("runtime", [None, "runc"])
def test_under_runc_the_engine_holds_the_users_limits_and_the_guest_none(
    runtime: str | None, fake_config: Config
) -> None:
    spec = _spec(runtime)
    host = host_config_for(spec)
    assert host["pids_limit"] == 100
    assert host["mem_limit"] == host["memswap_limit"] == spec.memory_limit
    assert "inner_limits" not in guest_config(fake_config, spec)


@pytest.mark.parametrize("runtime", ["runsc", "runsc-systrap"])
def test_under_gvisor_the_guest_holds_the_users_limits_and_the_engine_has_room_on_top(
    runtime: str, fake_config: Config
) -> None:
    spec = _spec(runtime)
    host = host_config_for(spec)
    assert host["runtime"] == runtime
    assert host["pids_limit"] == GVISOR_BASE_TASKS + GVISOR_TASKS_PER_PROCESS * 100
    whole = spec.memory_limit  # processes, the workspace and /dev/shm
    assert host["mem_limit"] == host["memswap_limit"] == whole + GVISOR_MEMORY_HEADROOM + whole // 8
    assert guest_config(fake_config, spec)["inner_limits"] == {"pids": 100, "memory": whole}
