"""``sbx bench --runtimes runc,runsc``: what a call costs under each OCI runtime, in one run.

The same image and calls in a sandbox of each runtime, one after another on
the same engine, each figure beside the first runtime's (the baseline) as a
ratio, because absolute times on a shared machine mean little.  It also says
which gVisor platforms the installed ``runsc`` offers (``systrap``, the
faster one, is only in releases from 2023 on).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from contextlib import AsyncExitStack
from typing import Any

import trio

from orchestrator.bench.timing import percentile
from orchestrator.config import Config

__all__ = ["collect_runtimes", "format_runtimes", "runsc_platforms"]


def runsc_platforms() -> list[str] | None:
    """The platforms the local ``runsc`` names in its flags; ``None`` without one."""
    runsc = shutil.which("runsc")
    if runsc is None:
        return None
    try:
        done = subprocess.run(
            [runsc, "flags"], capture_output=True, text=True, timeout=10, check=False
        )
        text = done.stdout + done.stderr
    except (OSError, subprocess.SubprocessError):
        return None
    for line in text.splitlines():
        if "which platform to use" in line:
            listed = line.split(":", 1)[1].rsplit("(default", 1)[0].replace("(default)", "")
            return [name.strip(" .") for name in listed.split(",") if name.strip(" .")]
    return []


async def collect_runtimes(
    config: Config, runtimes: list[str], iterations: int, image: str | None
) -> dict[str, Any]:
    """A session per runtime, all open at once, and their calls interleaved: drift on a
    shared machine hits every runtime alike."""
    from orchestrator.backends.docker.backend import DockerBackend
    from orchestrator.runtime import Orchestrator
    from orchestrator.session import Session

    async with AsyncExitStack() as stack:
        sessions: list[tuple[str, Session, DockerBackend, float]] = []
        for runtime in runtimes:
            sandbox = config.sandbox.model_copy(update={"runtime": runtime})
            settings = config.model_copy(update={"sandbox": sandbox, "reap_orphans": False})
            orch = await stack.enter_async_context(Orchestrator(settings))
            backend = orch.backend
            if not isinstance(backend, DockerBackend):  # pragma: no cover - config: docker
                raise RuntimeError("sbx bench --runtimes needs the Docker backend")
            started = trio.current_time()
            session = await stack.enter_async_context(orch.session(image=image, memories=False))
            sessions.append((runtime, session, backend, (trio.current_time() - started) * 1000))
        for _, session, backend, _ in sessions:  # warm up
            for _ in range(5):
                await session.exec(["true"])
            await backend.native_exec(session.sandbox_id or "", ["true"])
        channel: dict[str, list[float]] = {name: [] for name, *_ in sessions}
        docker: dict[str, list[float]] = {name: [] for name, *_ in sessions}
        for i in range(iterations):
            for name, session, backend, _ in sessions:
                start = time.perf_counter()
                await session.exec(["true"])
                channel[name].append((time.perf_counter() - start) * 1000)
                if i < max(10, min(iterations, 40)):  # docker exec is slow: fewer
                    start = time.perf_counter()
                    await backend.native_exec(session.sandbox_id or "", ["true"])
                    docker[name].append((time.perf_counter() - start) * 1000)
        rows: list[dict[str, Any]] = [
            {
                "runtime": name,
                "image": session.image,
                "session_start_ms": round(start_ms, 1),
                "exec_p50_ms": round(statistics.median(channel[name]), 3),
                "exec_p95_ms": round(percentile(channel[name], 0.95), 3),
                "docker_exec_p50_ms": round(statistics.median(docker[name]), 3),
            }
            for name, session, _, start_ms in sessions
        ]
    base = rows[0]
    for row in rows:
        row["exec_vs_baseline"] = round(row["exec_p50_ms"] / base["exec_p50_ms"], 2)
        row["docker_exec_vs_baseline"] = round(
            row["docker_exec_p50_ms"] / base["docker_exec_p50_ms"], 2
        )
    return {
        "iterations": iterations,
        "baseline": base["runtime"],
        "runsc_platforms": runsc_platforms(),
        "runtimes": rows,
    }


def format_runtimes(report: dict[str, Any]) -> str:
    lines = [
        f"sbx bench --runtimes — {report['iterations']} calls each, "
        f"ratios against {report['baseline']} in this run"
    ]
    for row in report["runtimes"]:
        lines.append(
            f"  {row['runtime']:<14} exec `true` p50 {row['exec_p50_ms']:>8.3f} ms "
            f"(p95 {row['exec_p95_ms']:.3f}; {row['exec_vs_baseline']:.2f}x)   "
            f"docker exec p50 {row['docker_exec_p50_ms']:>8.3f} ms "
            f"({row['docker_exec_vs_baseline']:.2f}x)   start {row['session_start_ms']:.0f} ms"
        )
    platforms = report["runsc_platforms"]
    if platforms is None:
        lines.append("  runsc: not installed here")
    else:
        has = "systrap" in platforms
        lines.append(
            f"  runsc platforms: {', '.join(platforms) or '?'}"
            + ("" if has else " (no systrap: this runsc predates it)")
        )
    return "\n".join(lines)
