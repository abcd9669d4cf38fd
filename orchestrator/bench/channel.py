"""``sbx bench``: our call path against the engine's own, measured in one run.

This machine is shared and noisy, so absolute times mean little; every
figure is printed beside a baseline taken in the same run on the same
container -- ``docker exec`` (docker-py ``exec_run``) for a call, ``docker
run --rm`` for a one-shot command -- and judged by their ratio.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.bench.timing import measure, percentile
from orchestrator.config import Config

if TYPE_CHECKING:
    from orchestrator.runtime import Orchestrator
    from orchestrator.session import Session

__all__ = ["BenchReport", "run_bench"]

BenchReport = dict[str, Any]

TARGETS = {
    "router_overhead_p50_ms": 0.5,
    "ping_p50_ms": 0.5,
    "channel_exec_p50_ms": 3.0,
    "ratio": 20.0,
    "run_ratio": 1.5,
    "run_served_ratio": 1.5,
}


async def _router_overhead(
    orch: Orchestrator, session: Session, iterations: int
) -> tuple[list[float], list[float]]:
    """The same bash call straight on the session's shell and through the router, interleaved."""
    from orchestrator.tools.bash import SHELL_NAME

    block = [{"type": "tool_use", "id": "toolu_bench", "name": "bash", "input": {"command": ":"}}]
    raw: list[float] = []
    routed: list[float] = []
    for _ in range(5):
        await orch.router.run(session, block)
    for _ in range(iterations):
        start = time.perf_counter()
        await session.shell(":", name=SHELL_NAME, timeout=30)
        raw.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        await orch.router.run(session, block)
        routed.append((time.perf_counter() - start) * 1000)
    return raw, routed


_RUN_IMPORTS = (
    "import orchestrator.cli as c; c._start_lightly(); "
    "import orchestrator.cli.run, orchestrator.runtime, orchestrator.backends.docker.backend"
)
"""What a local ``sbx run`` imports before it talks to the engine: its start-up floor."""


async def _time_process(argv: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        samples.append((time.perf_counter() - start) * 1000)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {result.returncode}: "
                f"{result.stderr.decode('utf-8', 'replace')[-500:]}"
            )
    return samples


async def collect(config: Config, iterations: int, image: str | None, cli: bool) -> BenchReport:
    from orchestrator.backends.docker.backend import DockerBackend
    from orchestrator.runtime import Orchestrator

    report: BenchReport = {"iterations": iterations}
    async with Orchestrator(config.model_copy(update={"reap_orphans": False})) as orch:
        backend = orch.backend
        if not isinstance(backend, DockerBackend):  # pragma: no cover - config only offers docker
            raise RuntimeError(
                "sbx bench compares against docker exec and needs the Docker backend"
            )
        async with orch.session(image=image, memories=False) as session:
            report["image"] = session.image
            assert session.sandbox_id is not None
            sandbox_id = session.sandbox_id
            ping = await measure(session.ping, iterations)
            channel_exec = await measure(lambda: session.exec(["true"]), iterations)
            raw_shell, routed = await _router_overhead(orch, session, iterations)
            docker_runs = max(10, min(iterations, 60))
            docker_exec = await measure(
                lambda: backend.native_exec(sandbox_id, ["true"]), docker_runs, warmup=2
            )
    for name, samples in (
        ("ping", ping),
        ("channel_exec", channel_exec),
        ("docker_exec", docker_exec),
    ):
        report[f"{name}_p50_ms"] = round(statistics.median(samples), 3)
        report[f"{name}_p95_ms"] = round(percentile(samples, 0.95), 3)
    report["docker_exec_iterations"] = len(docker_exec)
    report["shell_call_p50_ms"] = round(statistics.median(raw_shell), 3)
    report["routed_call_p50_ms"] = round(statistics.median(routed), 3)
    report["router_overhead_p50_ms"] = round(
        max(0.0, report["routed_call_p50_ms"] - report["shell_call_p50_ms"]), 3
    )
    report["ratio"] = round(report["docker_exec_p50_ms"] / report["channel_exec_p50_ms"], 1)

    docker_cli = shutil.which("docker")
    if cli and docker_cli:
        runs = 7
        image_name = report["image"]
        sbx_run: list[float] = []
        docker_run: list[float] = []
        imports: list[float] = []
        # Interleaved, so drift on a shared machine hits both alike.
        for _ in range(runs):
            docker_run += await _time_process(
                [
                    docker_cli,
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--entrypoint",
                    "true",
                    image_name,
                ],
                1,
            )
            sbx_run += await _time_process(
                [
                    sys.executable,
                    "-m",
                    "orchestrator.cli",
                    "run",
                    "--image",
                    image_name,
                    "--",
                    "true",
                ],
                1,
            )
            imports += await _time_process([sys.executable, "-c", _RUN_IMPORTS], 1)
        report["sbx_run_p50_ms"] = round(statistics.median(sbx_run), 1)
        report["docker_run_p50_ms"] = round(statistics.median(docker_run), 1)
        report["sbx_run_imports_p50_ms"] = round(statistics.median(imports), 1)
        report["run_ratio"] = round(report["sbx_run_p50_ms"] / report["docker_run_p50_ms"], 2)
        served = await _time_served_runs(image_name, runs, docker_cli)
        report["sbx_run_served_p50_ms"] = round(statistics.median(served["sbx"]), 1)
        report["docker_run_served_p50_ms"] = round(statistics.median(served["docker"]), 1)
        report["run_served_ratio"] = round(
            report["sbx_run_served_p50_ms"] / report["docker_run_served_p50_ms"], 2
        )
    report["targets"] = {
        key: {
            "target": target,
            "met": (report[key] >= target) if key == "ratio" else (report[key] <= target),
        }
        for key, target in TARGETS.items()
        if key in report
    }
    return report


async def _time_served_runs(image: str, runs: int, docker_cli: str) -> dict[str, list[float]]:
    """``sbx run --url`` against a server keeping two spares, beside ``docker run --rm``.

    The arrangement that makes ``docker run`` quick -- a thin client of a
    daemon that is already up -- measured the same way, interleaved.
    """
    import secrets

    from orchestrator.testing.api_process import start_api_process

    token = secrets.token_hex(16)
    server = await trio.to_thread.run_sync(
        lambda: start_api_process(
            {
                "SBX_TOKEN": token,
                "SBX_POOL__SIZE": "2",
                "SBX_POOL__IMAGES": json.dumps([image]),
                "SBX_LOGGING__LEVEL": "warning",
            }
        )
    )
    samples: dict[str, list[float]] = {"sbx": [], "docker": []}
    sbx = [sys.executable, "-m", "orchestrator.cli", "run", "--url", server.url, "--token", token]
    try:
        await trio.sleep(2)  # the spares start
        for _ in range(runs):
            samples["docker"] += await _time_process(
                [docker_cli, "run", "--rm", "--network", "none", "--entrypoint", "true", image], 1
            )
            samples["sbx"] += await _time_process([*sbx, "--image", image, "--", "true"], 1)
            await trio.sleep(0.3)  # as a person or a CI step would pace them: spares refill
    finally:
        await trio.to_thread.run_sync(server.stop)
    return samples


def _format(report: BenchReport) -> str:
    lines = [f"sbx bench — image {report['image']}, {report['iterations']} calls per figure"]

    def row(label: str, key: str) -> None:
        lines.append(
            f"  {label:<34} p50 {report[key + '_p50_ms']:>8.3f} ms   "
            f"p95 {report[key + '_p95_ms']:>8.3f} ms"
        )

    row("protocol ping (channel)", "ping")
    row("exec `true` (channel)", "channel_exec")
    row(f"exec `true` (docker exec, {report['docker_exec_iterations']} calls)", "docker_exec")
    lines.append(f"  docker exec / channel exec (p50)   {report['ratio']:.1f}x faster")
    lines.append(
        f"  bash tool call: shell {report['shell_call_p50_ms']:.3f} ms, through the router "
        f"{report['routed_call_p50_ms']:.3f} ms "
        f"(overhead {report['router_overhead_p50_ms']:.3f} ms)"
    )
    if "run_ratio" in report:
        lines.append(
            f"  `sbx run -- true`                  p50 {report['sbx_run_p50_ms']:>8.1f} ms"
        )
        lines.append(
            f"  `docker run --rm IMAGE true`       p50 {report['docker_run_p50_ms']:>8.1f} ms"
        )
        lines.append(f"  sbx run / docker run (p50)         {report['run_ratio']:.2f}x")
        lines.append(
            f"    of which Python and its imports  p50 {report['sbx_run_imports_p50_ms']:>8.1f} ms"
            "   (python -X importtime -m orchestrator.cli run ... shows them)"
        )
        lines.append(
            f"  `sbx run --url` (server, 2 spares) p50 {report['sbx_run_served_p50_ms']:>8.1f} ms"
            f"   (docker run {report['docker_run_served_p50_ms']:.1f} ms: "
            f"{report['run_served_ratio']:.2f}x)"
        )
    met = [
        f"{key} {'ok' if v['met'] else 'MISSED'} (target {v['target']})"
        for key, v in report["targets"].items()
    ]
    lines.append("  targets: " + ", ".join(met))
    return "\n".join(lines)


async def run_bench(
    config: Config, iterations: int, image: str | None, as_json: bool, cli: bool
) -> int:
    report = await collect(config, max(10, iterations), image, cli)
    print(json.dumps(report) if as_json else _format(report))
    return 0
