"""``sbx bench --http``: what the HTTP API adds to a call, and its memory under streaming load.

It starts ``sbx serve`` as a separate process (so its memory can be read on
its own), then measures, in one run: ``GET /healthz`` (the HTTP floor); exec
of ``true`` over HTTP and through the channel in this process, interleaved
call by call so that drift on a shared machine hits both alike -- their
difference and ratio are what HTTP adds; and many concurrent 10 MB output
streams while sampling the server's resident memory.

Every request goes through the one client of the API,
``orchestrator.api.client.SbxClient``.  Its calls block, so they run in
worker threads, each timed inside its thread.  This module must not speak
HTTP itself.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from orchestrator.api.client import SbxClient
from orchestrator.config import Config
from orchestrator.testing.api_process import start_api_process

__all__ = ["collect_http", "format_http"]

TARGETS = {
    "http_exec_p50_ms": 5.0,
    "http_overhead_p50_ms": 0.6,
    "server_rss_growth_mb": 100,
}
_WARMUP = 5


def _timed(fn: Callable[[], Any]) -> float:
    """Milliseconds of one call of ``fn``, in this thread."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


async def _interleaved(
    over_http: Callable[[], Any], in_process: Callable[[], Awaitable[Any]], iterations: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of ``iterations`` calls of each, taken in turn after a warm-up."""
    http: list[float] = []
    channel: list[float] = []
    for index in range(_WARMUP + iterations):
        elapsed = await trio.to_thread.run_sync(_timed, over_http)
        start = time.perf_counter()
        await in_process()
        if index >= _WARMUP:
            http.append(elapsed)
            channel.append((time.perf_counter() - start) * 1000)
    return http, channel


def _stream_output(url: str, token: str, session_id: str, nbytes: int) -> int:
    """Stream ``nbytes`` of output from a command; the bytes that arrived."""
    got = 0
    with SbxClient(url, token) as client:
        for event in client.exec_stream(
            session_id,
            f"head -c {nbytes} /dev/zero | tr '\\0' x",
            max_output=nbytes + 1,
        ):
            if event["type"] == "stdout":
                got += len(event["data"])
    return got


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
    report: dict[str, Any] = {
        "iterations": iterations,
        "streams": streams,
        "stream_bytes": stream_bytes,
    }
    client = SbxClient(server.url, token)
    try:

        async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))

        sid = (await call(client.create_session, **session_body))["id"]
        health = [await call(_timed, lambda: client.get("/healthz")) for _ in range(iterations)]

        orch = Orchestrator(config.model_copy(update={"reap_orphans": False}))
        async with orch, orch.session(image=image, memories=False) as session:
            http, channel = await _interleaved(
                lambda: client.exec(sid, ["true"]), lambda: session.exec(["true"]), iterations
            )

        sessions = [
            (await call(client.create_session, **session_body))["id"]
            for _ in range(max(1, streams // 10))
        ]
        baseline_rss = server.rss()
        peak_rss = baseline_rss
        totals: list[int] = []
        limiter = trio.CapacityLimiter(streams)

        async def sample() -> None:
            nonlocal peak_rss
            while True:
                peak_rss = max(peak_rss, server.rss())
                await trio.sleep(0.05)

        async def stream(i: int) -> None:
            target = sessions[i % len(sessions)]
            totals.append(
                await trio.to_thread.run_sync(
                    _stream_output, server.url, token, target, stream_bytes, limiter=limiter
                )
            )

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            async with trio.open_nursery() as streamers:
                for i in range(streams):
                    streamers.start_soon(stream, i)
            nursery.cancel_scope.cancel()
        elapsed = time.perf_counter() - started
        for target in [sid, *sessions]:
            await call(client.delete_session, target)
    finally:
        client.close()
        await trio.to_thread.run_sync(server.stop)

    for name, samples in (("healthz", health), ("http_exec", http), ("channel_exec", channel)):
        report[f"{name}_p50_ms"] = round(statistics.median(samples), 3)
    report["http_overhead_p50_ms"] = round(
        report["http_exec_p50_ms"] - report["channel_exec_p50_ms"], 3
    )
    report["http_ratio"] = round(report["http_exec_p50_ms"] / report["channel_exec_p50_ms"], 2)
    report["streams_complete"] = sum(1 for t in totals if t == stream_bytes)
    report["streams_seconds"] = round(elapsed, 2)
    report["streamed_mb_per_s"] = round(sum(totals) / elapsed / 1e6, 1)
    report["server_rss_baseline_mb"] = round(baseline_rss / 1e6, 1)
    report["server_rss_growth_mb"] = round((peak_rss - baseline_rss) / 1e6, 1)
    report["targets"] = {
        key: {"target": target, "met": report[key] <= target} for key, target in TARGETS.items()
    }
    if report["streams_complete"] != streams:
        report["targets"]["server_rss_growth_mb"]["met"] = False
    return report


def format_http(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"sbx bench --http — {report['iterations']} calls per figure",
            f"  GET /healthz (the HTTP floor)       p50 {report['healthz_p50_ms']:8.3f} ms",
            f"  exec `true` over HTTP               p50 {report['http_exec_p50_ms']:8.3f} ms",
            f"  exec `true` through the channel     p50 {report['channel_exec_p50_ms']:8.3f} ms"
            "   (the two interleaved, call by call)",
            f"  HTTP adds                               {report['http_overhead_p50_ms']:8.3f} ms"
            f"   ({report['http_ratio']:.2f}x the channel call)",
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
