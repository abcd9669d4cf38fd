"""The hardened HostConfig of one sandbox: what the engine is asked for, and nothing else.

Only ``SandboxSpec`` fields reach it, so no caller option can ask for a
privilege.  Must not: talk to the engine (the backend's business).
"""

from __future__ import annotations

from typing import Any

import docker.types

from orchestrator.backends.base import SandboxSpec
from orchestrator.images.guest_bundle import BUNDLE_DIR

__all__ = ["GUEST_CAPABILITIES", "ROOT_CAPABILITIES", "engine_limits", "host_config_for"]

GVISOR_TASKS_PER_PROCESS = 32
"""Host tasks per sandboxed process under gVisor's ptrace platform: 8-10 measured here
for sleeping processes, 12.3 for a fork bomb at its limit, and up to 19.5 left behind
after a fork bomb at 128 (2,500 host tasks: the stubs of its address spaces linger);
with room.  Too few is not a safe failure either: the gVisor kernel, a Go program, dies
with exit code 2 when it cannot make a thread, taking the session with it (at 14 per
process a bomb at 128 did so every time)."""
GVISOR_BASE_TASKS = 512
"""Host tasks of the gVisor kernel, its gofer and the guest (about 50 measured) and room."""
GVISOR_MEMORY_HEADROOM = 256 << 20
"""Memory for the gVisor kernel itself above the sandbox's, plus an eighth of the limit:
room for the guest's watcher to kill a command before the host's OOM killer acts."""


def engine_limits(spec: SandboxSpec) -> tuple[int, int]:
    """``(pids, memory)`` for the engine: the user's limits, or -- where the guest
    enforces them inside (gVisor) -- those plus the runtime's overhead, so that the
    sandbox's own limit, not the host's, is what a fork or memory bomb meets."""
    if not spec.limits_inside:
        return spec.pids_limit, spec.memory_limit
    pids = GVISOR_BASE_TASKS + GVISOR_TASKS_PER_PROCESS * spec.pids_limit
    memory = spec.memory_limit + GVISOR_MEMORY_HEADROOM + spec.memory_limit // 8
    return pids, memory


GUEST_CAPABILITIES = ("KILL", "SETGID", "SETPCAP", "SETUID")
"""What the guest keeps after dropping root: signal the user's processes, become the user
in a child, and empty that child's bounding set."""
ROOT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "NET_BIND_SERVICE", "SETFCAP")
"""What a command run as root gets (the guest holds them only to hand them on): enough for
apt-get, dpkg and pip; never KILL, SETUID, SETGID, SETPCAP or SYS_PTRACE."""


def _owner(user: str) -> tuple[str, str] | None:
    """Numeric owner of the session's mounts: ``uid:gid``, ``root``; ``None`` for a name
    (only the image knows its uid)."""
    if user == "root":
        return "0", "0"
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None
    return uid, gid or uid


def host_config_for(spec: SandboxSpec, *, guest_volume: str | None = None) -> dict[str, Any]:
    """The hardened HostConfig keyword arguments for one sandbox (``guest_volume``: the
    guest bundle to mount read-only at /opt/sbx)."""
    owner = _owner(spec.user)
    pids_limit, memory_limit = engine_limits(spec)
    tmpfs: dict[str, str] = {}
    for mount, size in spec.tmpfs.items():
        # Docker mounts tmpfs noexec unless told otherwise; a sandbox exists to run what
        # it builds (compiled programs, scripts, virtualenvs), so its writable places are
        # exec. /run holds only runtime state and stays noexec.
        exec_flag = "noexec" if mount == "/run" else "exec"
        base = f"rw,{exec_flag},nosuid,nodev,size={size}"
        if mount in ("/tmp", "/var/tmp") or owner is None:
            tmpfs[mount] = f"{base},mode=1777"  # shared, or a user known only by name
        else:
            tmpfs[mount] = f"{base},uid={owner[0]},gid={owner[1]},mode=0755"
    config: dict[str, Any] = {
        "auto_remove": True,
        "init": True,
        "read_only": not spec.writable_root,
        "tmpfs": tmpfs,
        # The guest starts as root with these four and drops to a uid of its own,
        # keeping them (see sbx_guest/privileges.py); every command it starts runs as
        # spec.user with no capability at all.
        "cap_drop": ["ALL"],
        # NET_ADMIN only lets the guest, still root, restrict a networked sandbox's
        # routes; it drops it before anything else runs.
        "cap_add": [
            *GUEST_CAPABILITIES,
            *ROOT_CAPABILITIES,
            *(["NET_ADMIN"] if spec.network else []),
        ],
        "security_opt": ["no-new-privileges"],
        "pids_limit": pids_limit,
        # tmpfs pages count towards the memory cgroup: the limit covers them, so a
        # full /workspace is ENOSPC for the writer, not an OOM kill of the sandbox.
        "mem_limit": memory_limit,
        "memswap_limit": memory_limit,
        "shm_size": spec.shm_size,
        "nano_cpus": int(spec.cpus * 1e9),
        "network_mode": "bridge" if spec.network else "none",
        "privileged": False,
        "ipc_mode": "private",
        # The attached stdout is the guest channel: a log would copy every byte of it
        # (file contents, command output) to the host's disk. Off unless configured,
        # and capped when on.
        "log_config": docker.types.LogConfig(
            type=spec.log_driver,
            config={}
            if spec.log_driver == "none"
            else {"max-size": str(spec.log_max_size), "max-file": "1"},
        ),
    }
    if spec.runtime:
        config["runtime"] = spec.runtime
    # Mounts (not binds): the engine refuses a missing source instead of creating it as root.
    mounts = [
        docker.types.Mount(
            target=mount.target,
            source=mount.source,
            type="bind",
            read_only=mount.read_only,
            propagation="rprivate",
        )
        for mount in spec.mounts
    ]
    if guest_volume is not None:
        mounts.append(
            docker.types.Mount(
                target=str(BUNDLE_DIR), source=guest_volume, type="volume", read_only=True
            )
        )
    if mounts:
        config["mounts"] = mounts
    return config
