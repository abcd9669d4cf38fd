"""``sbx bench --snapshots``: a snapshot of 100 MB of workspace data, and forks against cold starts.

One run measures, side by side:

- a cold start of the parent image (session opened to ready), several times;
- a snapshot of a session holding ``--snapshot-mb`` MB of random data in
  ``/workspace``, against a plain ``docker commit`` of the same sandbox (the
  engine's own cost of keeping the root, which misses the workspace);
- the start of a fork of that snapshot (its workspace restored), several times.

The snapshot image is removed at the end, however the run ends.

Must not: judge the figures (they are printed as ratios against the same run's
baselines).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import trio

from orchestrator.config import Config
from orchestrator.runtime import Orchestrator

__all__ = ["collect_snapshot_bench", "format_snapshot_bench"]

Report = dict[str, Any]


async def _start_seconds(orch: Orchestrator, image: str) -> float:
    started = time.perf_counter()
    async with orch.session(image=image):
        return time.perf_counter() - started
    raise AssertionError("unreachable")  # pragma: no cover


async def collect_snapshot_bench(
    config: Config, image: str | None = None, megabytes: int = 100, starts: int = 3
) -> Report:
    from orchestrator.backends.docker.backend import DockerBackend

    image = config.image_name(image or config.sandbox.image)
    async with Orchestrator(config) as orch:
        backend = orch.backend
        if not isinstance(backend, DockerBackend):
            raise SystemExit("sbx bench --snapshots measures the docker backend")
        api = backend.engine.client.api
        await _start_seconds(orch, image)  # warm-up: the guest bundle, the page cache
        cold = [await _start_seconds(orch, image) for _ in range(starts)]
        async with orch.session(image=image) as parent:
            fill = await parent.exec(
                f"head -c {megabytes * 1000 * 1000} /dev/urandom > /workspace/data.bin"
            )
            if fill.exit_code != 0:
                raise SystemExit(f"could not fill the workspace: {fill.stderr!r}")
            assert parent.sandbox_id is not None
            started = time.perf_counter()
            plain = await backend.engine.call(
                "docker commit (baseline)", api.commit, parent.sandbox_id, pause=False
            )
            commit_seconds = time.perf_counter() - started
            await backend.engine.call("removing the baseline", api.remove_image, plain["Id"])
            started = time.perf_counter()
            snap = await parent.snapshot()
            snapshot_seconds = time.perf_counter() - started
        try:
            forks = [await _start_seconds(orch, snap.image) for _ in range(starts)]
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await backend.engine.call("removing the snapshot", api.remove_image, snap.image)
    cold_median = statistics.median(cold)
    fork_median = statistics.median(forks)
    return {
        "image": image,
        "megabytes": megabytes,
        "starts": starts,
        "cold_start_s": [round(s, 3) for s in cold],
        "fork_start_s": [round(s, 3) for s in forks],
        "cold_start_median_s": round(cold_median, 3),
        "fork_start_median_s": round(fork_median, 3),
        "fork_vs_cold_ratio": round(fork_median / cold_median, 2),
        "docker_commit_s": round(commit_seconds, 3),
        "snapshot_s": round(snapshot_seconds, 3),
        "snapshot_vs_commit_ratio": round(snapshot_seconds / commit_seconds, 2),
        "snapshot_mb_per_s": round(megabytes / snapshot_seconds, 1),
        "snapshot_files": snap.files,
        "snapshot_bytes": snap.bytes,
    }


def format_snapshot_bench(report: Report) -> str:
    return "\n".join(
        [
            f"sbx bench --snapshots — image {report['image']}, {report['megabytes']} MB in "
            f"/workspace, {report['starts']} starts each",
            f"  {'snapshot (root + tmpfs mounts)':<46} {report['snapshot_s']:>8.2f} s   "
            f"{report['snapshot_mb_per_s']:.0f} MB/s of workspace",
            f"  {'  baseline: docker commit (root only)':<46} {report['docker_commit_s']:>8.2f} s",
            f"  {'  ratio':<46} {report['snapshot_vs_commit_ratio']:.2f}x the baseline",
            f"  {'fork start, median (workspace restored)':<46} "
            f"{report['fork_start_median_s']:>8.2f} s   {report['fork_start_s']}",
            f"  {'  baseline: cold start of the parent image':<46} "
            f"{report['cold_start_median_s']:>8.2f} s   {report['cold_start_s']}",
            f"  {'  ratio':<46} {report['fork_vs_cold_ratio']:.2f}x the baseline",
        ]
    )
