"""The ``[sandbox]`` and ``[limits]`` sections: what a sandbox is made of, and its ceilings.

A sandbox's memory limit is the sum of what its processes get and what its
tmpfs mounts and /dev/shm may hold (``sandbox_memory_limit``), because
tmpfs pages are memory; mounts may be sized as a share of ``memory``.

Must not: read files or the environment (``loading`` does).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Literal

from pydantic import Field, field_validator

from orchestrator.config.sections import _Section
from orchestrator.config.sizes import ByteSize, MemoryShare, MountSize, human_bytes

__all__ = [
    "LimitsConfig",
    "SandboxConfig",
    "memory_arithmetic",
    "sandbox_memory_limit",
]


def _default_tmpfs() -> dict[str, int | MemoryShare]:
    return {
        "/tmp": MemoryShare(50),
        "/var/tmp": MemoryShare(25),
        "/workspace": MemoryShare(100),
        "/home/sandbox": MemoryShare(25),
        "/run": 16 << 20,
    }


class SandboxConfig(_Section):
    """Defaults for every sandbox; a session may override the allow-listed ones."""

    image: str = "code-runner"
    memory: ByteSize = Field(default=1 << 30, ge=16 << 20)
    cpus: float = Field(default=1.0, gt=0, le=256)
    pids_limit: int = Field(default=512, ge=16)
    network: bool = False
    user: str = "1000:1000"
    workdir: str = "/workspace"
    env: dict[str, str] = Field(default_factory=dict)
    tmpfs: dict[str, MountSize] = Field(
        default_factory=_default_tmpfs,
        description="The writable mounts (the root is read-only): bytes, or a share of "
        "`memory` ('50%'). Their pages count as memory, so the container's memory limit is "
        "`memory` plus all of them plus /dev/shm.",
    )
    allowed_roots: list[str] = Field(
        default_factory=lambda: ["/workspace", "/tmp", "/var/tmp", "/home/sandbox"],
        description="File operations are confined to these directories.",
    )
    runtime: str | None = Field(default=None, description="OCI runtime, e.g. 'runsc' (gVisor).")
    log_driver: Literal["none", "json-file", "local"] = Field(
        default="none",
        description="The engine's log of the sandbox's output. Its stdout is the guest channel, "
        "so a log copies every byte read or run through it to the host's disk and costs "
        "throughput (json-file: 25-29 MB/s against 110-220 MB/s with none, measured here).",
    )
    log_max_size: ByteSize = Field(default=1 << 20, description="The log's cap, if any.")
    start_timeout: float = Field(default=60.0, gt=0)
    writable_root: bool = Field(
        default=False,
        description="A writable root filesystem (a session may ask for one); file calls then "
        "reach every path the user may write.",
    )
    root_size: ByteSize = Field(
        default=2 << 30,
        ge=16 << 20,
        description="The most a writable root may take beyond its image; past it the session "
        "is stopped (checked every root_check_interval; the engine here cannot cap it).",
    )
    root_check_interval: float = Field(default=1.0, gt=0, le=60)
    shm_size: ByteSize = Field(
        default=64 << 20, ge=1 << 20, description="Size of /dev/shm (memory, like the tmpfs)."
    )
    egress_blocked: list[str] = Field(
        default_factory=lambda: [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "100.64.0.0/10",
            "0.0.0.0/8",
            "224.0.0.0/4",
            "240.0.0.0/4",
        ],
        description="What a networked sandbox may not reach (CIDRs), besides its gateway, its "
        "own subnet (other sandboxes) and this host's addresses, which are never reachable.",
    )
    egress_allowed: list[str] = Field(
        default_factory=list,
        description="Ranges a networked sandbox may reach despite egress_blocked (a package "
        "mirror on the LAN); its name servers are always allowed.",
    )

    def tmpfs_for(self, memory: int, sizes: dict[str, int] | None = None) -> dict[str, int]:
        """The mounts' sizes in bytes for a sandbox given ``memory``; ``sizes`` override."""
        resolved = {
            mount: size.of(memory) if isinstance(size, MemoryShare) else size
            for mount, size in self.tmpfs.items()
        }
        return {**resolved, **(sizes or {})}

    @property
    def memory_limit(self) -> int:
        """What a default sandbox's memory cgroup is given: see ``sandbox_memory_limit``."""
        return sandbox_memory_limit(self.memory, self.tmpfs_for(self.memory), self.shm_size)

    @field_validator("tmpfs")
    @classmethod
    def _absolute_tmpfs(cls, value: dict[str, int | MemoryShare]) -> dict[str, int | MemoryShare]:
        for path in value:
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(
                    f"tmpfs mount point {path!r} must be an absolute path without '..'"
                )
        return value

    @field_validator("egress_blocked", "egress_allowed")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.IPv4Network(text, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{text!r} is not an IPv4 range such as 10.0.0.0/8: {exc}"
                ) from None
        return value

    @field_validator("allowed_roots")
    @classmethod
    def _absolute_roots(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"allowed root {path!r} must be an absolute path")
        return value


def sandbox_memory_limit(memory: int, tmpfs: dict[str, int], shm_size: int) -> int:
    """The container's memory limit: its processes' memory, plus every tmpfs and /dev/shm.

    Pages of a tmpfs count towards the memory cgroup of whoever wrote them, so a
    sandbox given ``memory`` for its processes and a 1 GiB /workspace needs a cgroup
    of both: otherwise filling /workspace leaves the processes nothing and the
    kernel kills the sandbox, where the writer should have got ENOSPC.
    """
    return memory + sum(tmpfs.values()) + shm_size


def memory_arithmetic(memory: int, tmpfs: dict[str, int], shm_size: int) -> str:
    """``sandbox_memory_limit`` written out, for messages: ``1 GiB (processes) + ...``."""
    parts = [f"{human_bytes(memory)} (processes)"]
    parts += [f"{human_bytes(size)} ({mount})" for mount, size in sorted(tmpfs.items())]
    parts.append(f"{human_bytes(shm_size)} (/dev/shm)")
    total = sandbox_memory_limit(memory, tmpfs, shm_size)
    return " + ".join(parts) + f" = {human_bytes(total)}"


class LimitsConfig(_Section):
    """Ceilings on what a session may ask for; a request beyond one is refused (422)."""

    max_memory: ByteSize = Field(
        default=16 << 30,
        ge=64 << 20,
        description="A sandbox's whole memory: its processes, its tmpfs mounts and /dev/shm.",
    )
    max_cpus: float | None = Field(
        default=None, gt=0, description="CPUs per sandbox; unset: this host's CPU count."
    )
    max_pids: int = Field(default=4096, ge=16, description="Processes per sandbox.")
    max_tmpfs_size: ByteSize = Field(default=8 << 30, ge=1 << 20, description="One tmpfs mount.")
    max_ttl: float = Field(default=86400.0, gt=0, description="A session's life (and idle), s.")
    max_sessions_per_owner: int = Field(
        default=64, ge=1, description="Open sessions of one API token owner."
    )
    max_labels: int = Field(default=32, ge=0, le=1024)
    max_label_bytes: ByteSize = Field(
        default=8 << 10, ge=0, description="All of a session's label keys and values together."
    )
    max_env: int = Field(default=256, ge=0, le=65536, description="Environment variables.")
    max_env_bytes: ByteSize = Field(
        default=128 << 10, ge=0, description="All of a session's env names and values together."
    )

    def cpus(self) -> float:
        """The CPU ceiling in force (the configured one, or this host's CPU count)."""
        return self.max_cpus if self.max_cpus is not None else float(os.cpu_count() or 1)
