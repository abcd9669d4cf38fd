"""What every backend must enforce: hardening, limits and containment.

Hardening is checked twice: as the backend reports what it applied
(``SandboxBackend.inspect``), and as a command sees it from inside.
"""

from __future__ import annotations

from orchestrator import Orchestrator
from tests.integration.test_hostile import (  # noqa: F401  (collected here, per backend)
    test_filling_every_writable_mount_is_enospc_and_the_sandbox_keeps_serving,
    test_no_command_can_read_or_write_the_guests_descriptors,
    test_no_command_can_signal_stop_or_kill_the_guest,
    test_no_command_can_trace_the_guest_and_none_holds_a_capability,
    test_without_network_nothing_is_reachable_by_address_or_by_name,
)
from tests.integration.test_sandbox import (  # noqa: F401
    test_network_when_asked_for,
    test_out_of_memory_is_reported_and_the_session_goes_on,
)

from .conftest import IMAGE


async def test_hardening_as_the_backend_reports_it(orch: Orchestrator) -> None:
    settings = orch.config.sandbox
    async with orch.session(image=IMAGE, memories=False) as s:
        info = await orch.backend.inspect(s.sandbox_id)
    facts = info.details
    assert facts["read_only"] is True
    assert facts["cap_drop"] == ["ALL"]
    assert "SYS_ADMIN" not in (facts["cap_add"] or [])
    assert "NET_ADMIN" not in (facts["cap_add"] or [])
    assert facts["privileged"] is False
    assert facts["pids_limit"] == settings.pids_limit
    assert facts["memory"] == settings.memory_limit
    assert facts["nano_cpus"] == int(settings.cpus * 1e9)
    assert facts["init"] is True
    assert "docker.sock" not in str(facts["mounts"])
    assert info.labels["io.sbx.session"] == s.id


async def test_hardening_as_seen_from_inside(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False, pids_limit=64) as s:
        uid = await s.exec(["id", "-u"])
        caps = await s.exec("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status")
        routes = await s.exec("tail -n +2 /proc/net/route")
        root = await s.exec("touch /usr/bin/evil")
        nnp = await s.exec("grep NoNewPrivs /proc/self/status")
        fork = await s.exec("for i in $(seq 100); do sleep 5 & done 2>&1; wait", timeout=30)
    assert uid.stdout.strip() != b"0"
    assert [line.split()[1] for line in caps.stdout.decode().splitlines()] == ["0" * 16] * 3
    # No network: no interface but lo (Docker), or one on a network of its own with no
    # route out (Swarm); test_without_network_... checks nothing answers.
    assert [line.split()[1] for line in routes.stdout.decode().splitlines()].count("00000000") == 0
    assert b"Read-only file system" in root.stderr
    assert nnp.stdout.split()[-1] == b"1"
    assert b"Resource temporarily unavailable" in fork.stdout + fork.stderr


async def test_limits_asked_for_are_applied(orch: Orchestrator) -> None:
    async with orch.session(
        image=IMAGE, memories=False, memory="256m", cpus=0.5, pids_limit=48
    ) as s:
        info = await orch.backend.inspect(s.sandbox_id)
        cgroup = await s.exec(
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>/dev/null"
            " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"
        )
    assert info.details["pids_limit"] == 48
    assert info.details["nano_cpus"] == 500_000_000
    memory, pids = cgroup.stdout.split()
    assert int(memory) == info.details["memory"]
    assert int(pids) == 48


async def test_sessions_cannot_see_each_other(orch: Orchestrator) -> None:
    async with (
        orch.session(image=IMAGE, memories=False) as a,
        orch.session(image=IMAGE, memories=False) as b,
    ):
        await a.write_file("/workspace/secret", b"a's")
        await a.exec("sleep 300 & echo started")
        files = await b.exec("ls /workspace; cat /workspace/secret 2>&1 || true")
        procs = await b.exec("ps -eo args=")
        hosts = [(await s.exec("hostname")).stdout for s in (a, b)]
    assert b"a's" not in files.stdout
    assert b"sleep 300" not in procs.stdout
    assert hosts[0] != hosts[1]
