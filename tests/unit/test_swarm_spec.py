"""The Swarm service a session's sandbox becomes: hardened, pinned, reserved, never restarted."""

from __future__ import annotations

import pytest

from orchestrator import Config
from orchestrator.backends.base import SandboxSpec
from orchestrator.backends.registry import backend_names
from orchestrator.backends.swarm.nodes import SwarmNodes
from orchestrator.backends.swarm.service_spec import service_definition
from orchestrator.errors import ConfigError
from orchestrator.resilience import Resilience


def _spec(**changes: object) -> SandboxSpec:
    fields: dict[str, object] = {
        "image": "sbx-base",
        "name": "sbx-abc",
        "labels": {"io.sbx.session": "abc"},
        "env": {"A": "1"},
        "memory": 512 << 20,
        "cpus": 1.5,
        "pids_limit": 256,
        "network": False,
        "tmpfs": {"/workspace": 64 << 20, "/run": 1 << 20},
        "user": "1000:1000",
        "workdir": "/workspace",
    }
    fields.update(changes)
    return SandboxSpec(**fields)  # type: ignore[arg-type]


def _definition(spec: SandboxSpec, reservation: int = 64 << 20) -> dict:
    return service_definition(
        spec,
        image_id="sha256:feed",
        network_id="net1",
        guest_volume="sbx-guest-1",
        memory_reservation=reservation,
        cpu_reservation=0.25,
        guest_silence=30.0,
    )


def test_a_service_is_one_replica_never_restarted_and_pinned_by_id() -> None:
    definition = _definition(_spec())
    template = definition["task_template"]
    assert definition["mode"] == {"Replicated": {"Replicas": 1}}
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["ContainerSpec"]["Image"] == "sha256:feed"
    assert template["Networks"] == [{"Target": "net1"}]
    assert definition["labels"] == {"io.sbx.session": "abc"}


def test_hardening_limits_and_reservations() -> None:
    spec = _spec()
    template = _definition(spec)["task_template"]
    container = template["ContainerSpec"]
    assert container["CapabilityDrop"] == ["ALL"]
    assert "CAP_NET_ADMIN" not in container["CapabilityAdd"]
    assert "CAP_SYS_ADMIN" not in container["CapabilityAdd"]
    assert container["ReadOnly"] is True
    assert container["Init"] is True
    assert container["OpenStdin"] is True
    assert container["User"] == "0:0"
    assert "SBX_GUEST_GREET=late" in container["Env"]
    assert "SBX_GUEST_SILENCE=30" in container["Env"]
    limits = template["Resources"]["Limits"]
    assert limits == {
        "NanoCPUs": 1_500_000_000,
        "MemoryBytes": spec.memory_limit,
        "Pids": 256,
    }
    assert template["Resources"]["Reservations"] == {
        "NanoCPUs": 250_000_000,
        "MemoryBytes": 64 << 20,
    }
    # A reservation is never more than the limit.
    tiny = _definition(spec, reservation=1 << 40)["task_template"]["Resources"]
    assert tiny["Reservations"]["MemoryBytes"] == spec.memory_limit


def test_writable_places_are_exec_tmpfs_volumes_owned_by_the_user_and_run_is_not() -> None:
    mounts = _definition(_spec())["task_template"]["ContainerSpec"]["Mounts"]
    by_target = {m["Target"]: m for m in mounts}
    workspace = by_target["/workspace"]["VolumeOptions"]["DriverConfig"]["Options"]
    assert workspace["type"] == "tmpfs"
    assert f"size={64 << 20}" in workspace["o"]
    assert ",exec," in workspace["o"] and "uid=1000" in workspace["o"]
    assert "noexec" in by_target["/run"]["VolumeOptions"]["DriverConfig"]["Options"]["o"]
    assert by_target["/dev/shm"]["TmpfsOptions"]["SizeBytes"] == 64 << 20
    assert by_target["/opt/sbx"] == {
        "Type": "volume",
        "Source": "sbx-guest-1",
        "Target": "/opt/sbx",
        "ReadOnly": True,
    }


def test_a_networked_sandbox_gets_net_admin_for_its_guest_only() -> None:
    container = _definition(_spec(network=True))["task_template"]["ContainerSpec"]
    assert "CAP_NET_ADMIN" in container["CapabilityAdd"]


def test_swarm_is_a_backend_and_half_a_tls_setting_is_refused() -> None:
    assert "swarm" in backend_names()
    config = Config()
    config.swarm.tls_ca = "/x/ca.pem"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="go together"):
        SwarmNodes(config, Resilience())
