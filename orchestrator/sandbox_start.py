"""Bringing one sandbox up: create it, attach to its guest, start it, wait for the greeting.

The order matters and is the same for every backend: the stream is attached
*before* the container starts (so no byte of the guest's greeting is lost,
and stdin-once makes the stream's end the guest's end), then the guest is
handed its configuration in the handshake.

Must not: keep the sandbox's state (the session does); swallow a failure (a
sandbox made half-way is the caller's to remove: ``on_created`` names it at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
import trio

from orchestrator.backends.base import SandboxBackend, SandboxSpec, StderrSink
from orchestrator.channel import GuestChannel
from orchestrator.config import Config
from orchestrator.errors import SandboxGone, SandboxStartError
from orchestrator.guest_client.client import CallLimits, GuestClient
from orchestrator.host_network import local_ipv4_addresses
from orchestrator.observe import Observer
from orchestrator.resilience import Resilience

__all__ = ["guest_config", "guest_log_sink", "make_client", "start_sandbox"]


def guest_config(config: Config, spec: SandboxSpec) -> dict[str, Any]:
    """What the guest is told in the handshake: the user to run as, its roots, working
    directory and limits, and -- with network -- what the sandbox may not reach."""
    roots = ["/"] if spec.writable_root else list(config.sandbox.allowed_roots)
    if not any(spec.workdir == r or spec.workdir.startswith(r.rstrip("/") + "/") for r in roots):
        roots.append(spec.workdir)  # an image's own WORKDIR (a repository at /app) is readable
    settings: dict[str, Any] = {
        "user": spec.user,
        "roots": roots,
        "workdir": spec.workdir,
        "max_file": config.session.file_size_limit,
        "max_output": config.session.output_limit,
        "kill_grace": config.session.kill_grace,
    }
    if spec.limits_inside:
        # The engine's limits are raised by the runtime's overhead; the guest holds
        # the user's (see sbx_guest/inner_limits.py).
        settings["inner_limits"] = {"pids": spec.pids_limit, "memory": spec.memory_limit}
        # And root, which gVisor's /proc would let reach the guest, is refused inside
        # too: a user name of the image may be uid 0 (see backends.base.root_refused).
        settings["refuse_root"] = True
    if spec.network:
        blocked = [*config.sandbox.egress_blocked, *(f"{a}/32" for a in local_ipv4_addresses())]
        settings["egress"] = {"blocked": blocked, "allowed": list(config.sandbox.egress_allowed)}
    return settings


async def start_sandbox(
    backend: SandboxBackend,
    spec: SandboxSpec,
    nursery: trio.Nursery,
    *,
    config: Config,
    label: str,
    session_id: str,
    on_created: Callable[[str], None],
    on_stderr: StderrSink,
    resilience: Resilience | None = None,
) -> GuestChannel:
    """The channel to a started sandbox's guest, within ``sandbox.start_timeout``.

    The channel's reader runs in ``nursery``; ``label`` names the sandbox in
    messages.  Raises ``SandboxStartError`` saying what to do.  Sandboxes of an
    image that keep failing to start open that image's breaker (``image:<ref>``):
    later starts fail fast with ``DependencyDown`` until a probe starts.
    """
    if resilience is None:
        return await _start(
            backend, spec, nursery, config, label, session_id, on_created, on_stderr
        )
    breaker = resilience.breaker(f"image:{spec.image}", f"starting sandboxes of {spec.image}")
    with breaker.guard(lambda exc: isinstance(exc, SandboxStartError)):
        return await _start(
            backend, spec, nursery, config, label, session_id, on_created, on_stderr
        )


async def _start(
    backend: SandboxBackend,
    spec: SandboxSpec,
    nursery: trio.Nursery,
    config: Config,
    label: str,
    session_id: str,
    on_created: Callable[[str], None],
    on_stderr: StderrSink,
) -> GuestChannel:
    timeout = config.sandbox.start_timeout
    deadline = trio.current_time() + timeout
    try:
        with trio.fail_at(deadline):
            # A create cut short by a cancel (Ctrl-C, a closing supervisor) would still
            # make its container -- the engine does not hear that the caller left -- and
            # nobody would know its id.  So a cancel waits for the engine's answer, never
            # past the start deadline, and the sandbox is named at once.
            with trio.CancelScope(shield=True), trio.fail_at(deadline):
                info = await backend.create(spec)
            on_created(info.id)
            stream = await backend.attach(info.id, on_stderr)
            channel = GuestChannel(stream, name=label, session_id=session_id)
            await backend.start(info.id)
            await channel.start(nursery, config=guest_config(config, spec), timeout=timeout)
            return channel
    except trio.TooSlowError:
        raise SandboxStartError(
            f"sandbox {label} was not ready within {timeout:g} s; the engine may be "
            "overloaded — retry, or raise sandbox.start_timeout"
        ) from None
    except SandboxGone as exc:
        raise SandboxStartError(
            f"sandbox {label} exited while starting: {exc}. Check the image with `sbx doctor` "
            "and rebuild it with `sbx images build`"
        ) from None


def make_client(
    channel: GuestChannel, config: Config, session_id: str, observer: Observer
) -> GuestClient:
    """The typed client of a started sandbox's guest, with the session's call limits."""
    settings = config.session
    limits = CallLimits(call_timeout=settings.call_timeout, kill_grace=settings.kill_grace)
    return GuestClient(channel, label=f"session {session_id}", limits=limits, observer=observer)


def guest_log_sink(log: structlog.typing.FilteringBoundLogger) -> StderrSink:
    """Where the guest's stderr (its JSON log lines) goes: the session's log, at debug."""

    def sink(data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                log.debug("guest", line=line)

    return sink
