"""``sbx bench --http``: the HTTP API's latency and memory under streaming load.

It starts ``sbx serve`` as a separate process (so its memory can be read on
its own), then measures, in one run: ``GET /healthz`` (the HTTP floor), exec
of ``true`` over HTTP, exec of ``true`` through the channel in-process (the
baseline the HTTP path adds to), and many concurrent 10 MB output streams
while sampling the server's resident memory.

Exec over HTTP is timed with two clients: httpx, and a bare keep-alive
HTTP/1.1 client over one socket -- what curl, Go's net/http or any lean client
costs.  httpx alone adds about half a millisecond per request here, which is
the client's cost, not the server's; the target is judged on the lean client
and both figures are printed.
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

__all__ = ["LeanHttpClient", "collect_http"]


class LeanHttpClient:
    """One keep-alive HTTP/1.1 connection; requests in turn, bodies by Content-Length."""

    def __init__(self, stream: trio.SocketStream, host: str, headers: dict[str, str]) -> None:
        self._stream = stream
        self._host = host
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._buffer = b""

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str]) -> LeanHttpClient:
        parsed = httpx.URL(url)
        stream = await trio.open_tcp_stream(parsed.host, parsed.port or 80)
        return cls(stream, f"{parsed.host}:{parsed.port}", headers)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n{self._headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        await self._stream.send_all(head.encode() + body)
        while b"\r\n\r\n" not in self._buffer:
            await self._fill()
        header_bytes, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = header_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(self._buffer) < length:
            await self._fill()
        data, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, data

    async def _fill(self) -> None:
        chunk = await self._stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        self._buffer += chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


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

            lean = await LeanHttpClient.connect(url, headers)
            exec_body = json.dumps({"command": ["true"]}).encode()

            async def lean_exec() -> None:
                status, data = await lean.request("POST", f"/v1/sessions/{sid}/exec", exec_body)
                if status != 200:
                    raise RuntimeError(f"exec over HTTP answered {status}: {data[:200]!r}")

            health = await measure(healthz, iterations)
            http = await measure(http_exec, iterations)
            try:
                http_lean = await measure(lean_exec, iterations)
            finally:
                await lean.aclose()

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

    for name, samples in (
        ("healthz", health),
        ("http_exec_httpx", http),
        ("http_exec", http_lean),
        ("channel_exec", channel),
    ):
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
        "server_rss_growth_mb": {
            "target": 100,
            "met": report["server_rss_growth_mb"] <= 100 and report["streams_complete"] == streams,
        },
    }
    return report


def format_http(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"sbx bench --http — {report['iterations']} calls per figure",
            f"  GET /healthz (httpx, HTTP floor)    p50 {report['healthz_p50_ms']:8.3f} ms",
            f"  exec `true` over HTTP (httpx)       p50 {report['http_exec_httpx_p50_ms']:8.3f} ms",
            f"  exec `true` over HTTP (lean client) p50 {report['http_exec_p50_ms']:8.3f} ms",
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
