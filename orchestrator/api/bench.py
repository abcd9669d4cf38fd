"""``sbx bench --http``: the HTTP API's latency and memory under streaming load.

It starts ``sbx serve`` as a separate process (so its memory can be read on
its own), then measures, in one run: ``GET /healthz`` (the HTTP floor), exec
of ``true`` over HTTP, exec of ``true`` through the channel in-process (the
baseline the HTTP path adds to), and many concurrent 10 MB output streams
while sampling the server's resident memory.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from typing import Any

import httpx
import trio

from orchestrator.bench import measure
from orchestrator.config import Config
from orchestrator.testing.api_process import start_api_process

__all__ = ["collect_http"]


async def collect_http(
    config: Config,
    iterations: int,
    image: str | None,
    streams: int = 100,
    stream_bytes: int = 10_000_000,
) -> dict[str, Any]:
    from orchestrator.runtime import Orchestrator

    token = secrets.token_hex(16)
    # Benchmark sessions do not mount anyone's memory store.
    session_body: dict[str, Any] = {"memories": False, **({"image": image} if image else {})}
    server = await trio.to_thread.run_sync(
        lambda: start_api_process({"SBX_TOKEN": token, "SBX_LOGGING__LEVEL": "info"})
    )
    url = server.url
    report: dict[str, Any] = {
        "iterations": iterations,
        "streams": streams,
        "stream_bytes": stream_bytes,
    }
    try:
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=600, limits=limits
        ) as client:
            created = await client.post("/v1/sessions", json=session_body)
            created.raise_for_status()
            sid = created.json()["id"]

            async def healthz() -> None:
                (await client.get("/healthz")).raise_for_status()

            async def http_exec() -> None:
                response = await client.post(f"/v1/sessions/{sid}/exec", json={"command": ["true"]})
                response.raise_for_status()

            health = await measure(healthz, iterations)
            http = await measure(http_exec, iterations)

            orch = Orchestrator(config.model_copy(update={"reap_orphans": False}))
            async with orch, orch.session(image=image, memories=False) as session:
                channel = await measure(lambda: session.exec(["true"]), iterations)

            sessions = []
            for _ in range(max(1, streams // 10)):
                r = await client.post("/v1/sessions", json=session_body)
                r.raise_for_status()
                sessions.append(r.json()["id"])
            baseline_rss = server.rss()
            peak_rss = baseline_rss
            totals: list[int] = []

            async def sample() -> None:
                nonlocal peak_rss
                while True:
                    peak_rss = max(peak_rss, server.rss())
                    await trio.sleep(0.05)

            async def stream(i: int) -> None:
                target = sessions[i % len(sessions)]
                got = 0
                async with client.stream(
                    "POST",
                    f"/v1/sessions/{target}/exec",
                    json={
                        "command": f"head -c {stream_bytes} /dev/zero | tr '\\0' x",
                        "max_output": stream_bytes + 1,
                    },
                    headers={"Accept": "application/x-ndjson"},
                ) as response:
                    async for line in response.aiter_lines():
                        event = json.loads(line)
                        if event["type"] == "stdout":
                            got += len(event["data"])
                totals.append(got)

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                async with trio.open_nursery() as streamers:
                    for i in range(streams):
                        streamers.start_soon(stream, i)
                nursery.cancel_scope.cancel()
            elapsed = time.perf_counter() - started
            for target in [sid, *sessions]:
                await client.delete(f"/v1/sessions/{target}")
    finally:
        await trio.to_thread.run_sync(server.stop)

    for name, samples in (("healthz", health), ("http_exec", http), ("channel_exec", channel)):
        report[f"{name}_p50_ms"] = round(statistics.median(samples), 3)
    report["http_overhead_p50_ms"] = round(
        report["http_exec_p50_ms"] - report["channel_exec_p50_ms"], 3
    )
    report["streams_complete"] = sum(1 for t in totals if t == stream_bytes)
    report["streams_seconds"] = round(elapsed, 2)
    report["streamed_mb_per_s"] = round(sum(totals) / elapsed / 1e6, 1)
    report["server_rss_baseline_mb"] = round(baseline_rss / 1e6, 1)
    report["server_rss_growth_mb"] = round((peak_rss - baseline_rss) / 1e6, 1)
    report["targets"] = {
        "http_exec_p50_ms": {"target": 5.0, "met": report["http_exec_p50_ms"] <= 5.0},
        "server_rss_growth_mb": {"target": 100, "met": report["server_rss_growth_mb"] <= 100},
    }
    return report


def format_http(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"sbx bench --http — {report['iterations']} calls per figure",
            f"  GET /healthz (HTTP floor)           p50 {report['healthz_p50_ms']:8.3f} ms",
            f"  exec `true` over HTTP               p50 {report['http_exec_p50_ms']:8.3f} ms",
            f"  exec `true` through the channel     p50 {report['channel_exec_p50_ms']:8.3f} ms"
            f"   (HTTP adds {report['http_overhead_p50_ms']:.3f} ms)",
            f"  {report['streams']} concurrent streams x {report['stream_bytes'] / 1e6:.0f} MB: "
            f"{report['streams_complete']} complete in {report['streams_seconds']} s "
            f"({report['streamed_mb_per_s']} MB/s), server RSS "
            f"{report['server_rss_baseline_mb']} MB + {report['server_rss_growth_mb']} MB",
            "  targets: "
            + ", ".join(
                f"{k} {'ok' if v['met'] else 'MISSED'} (target {v['target']})"
                for k, v in report["targets"].items()
            ),
        ]
    )
