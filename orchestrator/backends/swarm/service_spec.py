"""A session's sandbox as a Swarm service: one replica, never restarted, hardened.

What Docker Swarm can express on Engine 20.10 (API 1.41) is set here as the
Docker backend sets it: capabilities (drop ALL, add the guest's), read-only
root, init, user, CPU, memory and pids limits, sized tmpfs mounts, labels,
the log driver.  What it cannot, and what stands in for it:

- ``network_mode: none``: a per-session *internal* overlay network that no
  other container joins (made by the backend);
- ``no-new-privileges``: the nodes' engines run with ``--no-new-privileges``
  (``sbx doctor`` and the tests check it from inside);
- ``memory-swap`` equal to memory: none; run nodes without swap;
- ``shm_size``: a tmpfs mount of the same size at /dev/shm;
- tmpfs ``exec``/``uid`` options (Swarm's tmpfs mounts are noexec, their
  mode ignored): anonymous volumes of the local driver of type tmpfs, with
  the same options;
- ``auto_remove`` and ``StdinOnce``: the supervisor removes the service, and
  the guest exits once it hears nothing for ``swarm.guest_silence``;
- ``runtime`` (gVisor): none; nodes whose default runtime is runsc.

Must not: accept anything but a ``SandboxSpec`` (no raw engine options).
"""

from __future__ import annotations

from typing import Any

from orchestrator.backends.base import SandboxSpec
from orchestrator.backends.docker.host_config import (
    GUEST_CAPABILITIES,
    ROOT_CAPABILITIES,
    host_config_for,
)
from orchestrator.images.guest_bundle import BUNDLE_DIR, guest_command

__all__ = ["service_definition"]


def _mounts(spec: SandboxSpec, guest_volume: str) -> list[dict[str, Any]]:
    # Swarm's own tmpfs mounts are always noexec and ignore their mode on 20.10: each
    # writable place is instead an anonymous volume of the local driver that *is* a tmpfs,
    # with the Docker backend's options (size, exec, owner); it goes with its container.
    options = host_config_for(spec)["tmpfs"]
    mounts: list[dict[str, Any]] = [
        {
            "Type": "volume",
            "Target": target,
            "VolumeOptions": {
                "Labels": dict(spec.labels),
                "DriverConfig": {
                    "Name": "local",
                    "Options": {"type": "tmpfs", "device": "tmpfs", "o": options[target]},
                },
            },
        }
        for target in spec.tmpfs
    ]
    mounts.append(
        {"Type": "tmpfs", "Target": "/dev/shm", "TmpfsOptions": {"SizeBytes": spec.shm_size}}
    )
    mounts.append(
        {"Type": "volume", "Source": guest_volume, "Target": str(BUNDLE_DIR), "ReadOnly": True}
    )
    mounts.extend(
        {"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
        for m in spec.mounts
    )
    return mounts


def service_definition(
    spec: SandboxSpec,
    *,
    image_id: str,
    network_id: str,
    guest_volume: str,
    memory_reservation: int,
    cpu_reservation: float,
    guest_silence: float,
) -> dict[str, Any]:
    """Keyword arguments for docker-py's ``APIClient.create_service``."""
    env = {**spec.env, "SBX_GUEST_GREET": "late", "SBX_GUEST_SILENCE": f"{guest_silence:g}"}
    container: dict[str, Any] = {
        "Image": image_id,  # pinned: an ID is never pulled, and never means another image
        "Command": guest_command(),
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Dir": spec.workdir,
        "User": "0:0",  # the guest's; it runs what it starts as spec.user
        "Labels": dict(spec.labels),
        "Init": True,
        "OpenStdin": True,
        "TTY": False,
        "ReadOnly": not spec.writable_root,
        "Mounts": _mounts(spec, guest_volume),
        "CapabilityDrop": ["ALL"],
        "CapabilityAdd": [
            f"CAP_{cap}"
            for cap in (
                *GUEST_CAPABILITIES,
                *ROOT_CAPABILITIES,
                *(["NET_ADMIN"] if spec.network else []),
            )
        ],
        "StopGracePeriod": 2_000_000_000,
    }
    if spec.command is not None:
        container["Args"] = list(spec.command)
    log_options = {} if spec.log_driver == "none" else {"max-size": str(spec.log_max_size)}
    task_template: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {
            "Limits": {
                "NanoCPUs": int(spec.cpus * 1e9),
                "MemoryBytes": spec.memory_limit,
                "Pids": spec.pids_limit,
            },
            "Reservations": {
                "NanoCPUs": int(min(cpu_reservation, spec.cpus) * 1e9),
                "MemoryBytes": min(memory_reservation, spec.memory_limit),
            },
        },
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Networks": [{"Target": network_id}],
        "LogDriver": {"Name": spec.log_driver, "Options": log_options},
    }
    return {
        "task_template": task_template,
        "name": spec.name,
        "labels": dict(spec.labels),
        "mode": {"Replicated": {"Replicas": 1}},
        # No virtual IP: nothing ever connects to a sandbox by its service's name.
        "endpoint_spec": {"Mode": "dnsrr"},
    }
