"""``sbx bench --density``: how many sandboxes one engine (or a swarm) carries, and at what cost.

For each N: N sessions opened at once, then ``calls`` ``exec true`` in every
one of them concurrently; reported are the aggregate calls/s, p50/p99 of a
call, CPU per call (this process -- the orchestrator --, the sandboxes'
cgroups: the guest plus what it spawns, the engine's processes on this host:
dockerd, containerd and the shims carrying every sandbox's stdio, and the
whole host, other tenants included), memory per idle sandbox (its cgroup),
and how long opening took.  Beside it, in the same sandboxes and
the same run, the floor: the same loops spawning ``true`` directly inside
each sandbox (one shell loop per sandbox, no sbx in the path), and the ratio.
Latency is also compared with one session alone: the first N whose p50 is
twice that is where latency doubles.

Must not: judge figures against absolute targets (the machine is shared).
"""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.bench.timing import percentile
from orchestrator.config import Config
from orchestrator.errors import SandboxStartError, SbxError

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["collect_density", "format_density"]

_CGROUP = (
    "if [ -f /sys/fs/cgroup/memory.current ]; then"
    " cat /sys/fs/cgroup/memory.current;"
    " awk '/^usage_usec/ {print $2 * 1000}' /sys/fs/cgroup/cpu.stat;"
    " else cat /sys/fs/cgroup/memory/memory.usage_in_bytes /sys/fs/cgroup/cpuacct/cpuacct.usage;"
    " fi"
)
"""The sandbox's own cgroup: memory in use (bytes), then CPU used so far (ns)."""


_ENGINE_PROCESSES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")


def _engine_and_host_cpu() -> tuple[float, float]:
    """CPU seconds used so far by this host's engine processes (dockerd, containerd and
    the shims that carry every sandbox's stdio), and by the whole host; zeros where
    /proc cannot tell (the engine on another machine)."""
    ticks = os.sysconf("SC_CLK_TCK")
    engine = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                text = stat.read().decode("ascii", "replace")
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if name in _ENGINE_PROCESSES or name.startswith("containerd-shim"):
            fields = text[text.rfind(")") + 2 :].split()
            engine += int(fields[11]) + int(fields[12])
    try:
        with open("/proc/stat", "rb") as stat:
            cpu = stat.readline().split()[1:]
        host = sum(int(v) for i, v in enumerate(cpu[:8]) if i not in (3, 4))  # not idle, iowait
    except OSError:
        host = 0
    return engine / ticks, host / ticks


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _cgroup(session: Session) -> tuple[int, int]:
    out = (await session.exec(["sh", "-c", _CGROUP], timeout=30)).stdout.split()
    return int(out[0]), int(float(out[1]))


async def _each(sessions: list[Session], fn: Any) -> list[Any]:
    results: list[Any] = [None] * len(sessions)

    async def one(i: int) -> None:
        results[i] = await fn(sessions[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(sessions)):
            nursery.start_soon(one, i)
    return results


async def _loop_calls(sessions: list[Session], calls: int) -> tuple[list[float], float]:
    latencies: list[float] = []

    async def run(session: Session) -> None:
        for _ in range(calls):
            start = time.perf_counter()
            await session.exec(["true"], timeout=60)
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await _each(sessions, run)
    return latencies, time.perf_counter() - start


async def _floor(sessions: list[Session], calls: int) -> float:
    """Calls/s of ``true`` spawned by a shell loop inside every sandbox at once."""
    script = (
        f"s=$(date +%s%N); i=0; while [ $i -lt {calls} ]; do /bin/true; i=$((i+1)); done;"
        " echo $s $(date +%s%N)"
    )
    spans = await _each(sessions, lambda s: s.exec(["sh", "-c", script], timeout=600))
    starts, ends = zip(*(map(int, r.stdout.split()) for r in spans), strict=True)
    return float(len(sessions) * calls / ((max(ends) - min(starts)) / 1e9))


async def _one_size(orch: Any, image: str, count: int, calls: int) -> dict[str, Any]:
    sessions: list[Session] = []
    refused: list[SbxError] = []
    opened = time.perf_counter()

    async def open_one() -> None:
        try:
            sessions.append(await orch.open_session(image=image, memories=False))
        except SbxError as exc:  # the engine's limit at this N: a finding, not a crash
            refused.append(exc)

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(open_one)
        open_seconds = time.perf_counter() - opened
        if refused:
            return {
                "sessions": count,
                "open_seconds": round(open_seconds, 2),
                "error": f"{len(refused)} of {count} sessions did not open "
                f"(the first: {refused[0]}); measure fewer (--sessions), or raise "
                "sandbox.start_timeout",
            }
        await trio.sleep(1.0)
        before = await _each(sessions, _cgroup)
        own_before = _own_cpu()
        engine_before, host_before = _engine_and_host_cpu()
        latencies, wall = await _loop_calls(sessions, calls)
        own_cpu = _own_cpu() - own_before
        engine_after, host_after = _engine_and_host_cpu()
        after = await _each(sessions, _cgroup)
        floor = await _floor(sessions, calls)
    finally:
        async with trio.open_nursery() as nursery:
            for session in sessions:
                nursery.start_soon(session.close)
    total = count * calls
    rate = total / wall
    # The two cgroup readings' own exec is inside the window; it is one call in `calls`.
    guest_ns = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return {
        "sessions": count,
        "calls": total,
        "open_seconds": round(open_seconds, 2),
        "calls_per_s": round(rate, 1),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "orchestrator_cpu_ms_per_call": round(own_cpu * 1000 / total, 3),
        "sandbox_cpu_ms_per_call": round(guest_ns / 1e6 / total, 3),
        "engine_cpu_ms_per_call": round((engine_after - engine_before) * 1000 / total, 3),
        "host_cpu_ms_per_call": round((host_after - host_before) * 1000 / total, 3),
        "idle_memory_mb_per_sandbox": round(
            sorted(m for m, _ in before)[len(before) // 2] / (1 << 20), 1
        ),
        "floor_calls_per_s": round(floor, 1),
        "ratio_to_floor": round(rate / floor, 3),
    }


async def collect_density(
    config: Config, sizes: list[int], calls: int, image: str | None
) -> dict[str, Any]:
    from orchestrator.runtime import Orchestrator

    image = image or "base"
    async with Orchestrator(config) as orch:
        alone = await _one_size(orch, image, 1, calls)
        if "error" in alone:
            raise SandboxStartError(f"not even one sandbox of {image} started: {alone['error']}")
        rows = [await _one_size(orch, image, count, calls) for count in sizes]
    measured = [r for r in rows if "error" not in r]
    doubled = next((r["sessions"] for r in measured if r["p50_ms"] >= 2 * alone["p50_ms"]), None)
    return {
        "backend": config.engine.backend,
        "image": image,
        "alone": alone,
        "sizes": rows,
        "latency_doubles_at": doubled,
    }


def format_density(report: dict[str, Any]) -> str:
    columns = [
        ("sessions", "N"),
        ("open_seconds", "open s"),
        ("calls_per_s", "calls/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("orchestrator_cpu_ms_per_call", "sbx CPU ms/call"),
        ("sandbox_cpu_ms_per_call", "sandbox CPU ms/call"),
        ("engine_cpu_ms_per_call", "engine CPU ms/call"),
        ("host_cpu_ms_per_call", "host CPU ms/call"),
        ("idle_memory_mb_per_sandbox", "idle MB/sandbox"),
        ("floor_calls_per_s", "floor calls/s"),
        ("ratio_to_floor", "ratio"),
    ]
    lines = [
        f"sbx bench --density on {report['backend']} ({report['image']}); floor: `true` "
        "spawned by a shell loop in the same sandboxes, same run",
        "  ".join(f"{title:>{max(7, len(title))}}" for _, title in columns),
    ]
    for row in [report["alone"], *report["sizes"]]:
        if "error" in row:
            lines.append(f"{row['sessions']:>7}  not measured: {row['error']}")
            continue
        lines.append("  ".join(f"{row[key]!s:>{max(7, len(title))}}" for key, title in columns))
    doubled = report["latency_doubles_at"]
    lines.append(
        f"p50 latency doubles (against one session alone) at N = {doubled}"
        if doubled
        else "p50 latency did not double at any N measured"
    )
    return "\n".join(lines)
