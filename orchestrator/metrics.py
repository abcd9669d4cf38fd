"""Prometheus metrics for ``/metrics``: sessions, sandbox starts, calls and their latency.

Each ``PrometheusObserver`` has a registry of its own, so several
orchestrators in one process (tests, embedders) never collide on metric
names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from orchestrator.observe import Outcome
from orchestrator.resilience import BreakerState, Resilience

__all__ = ["CONTENT_TYPE_LATEST", "PrometheusObserver"]

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)


class PrometheusObserver:
    def __init__(
        self, open_sessions: Callable[[], int], spares: Callable[[], int] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Gauge("sbx_sessions", "Sessions open now.", registry=r)
        self.sessions.set_function(lambda: float(open_sessions()))
        self.spares = Gauge("sbx_pool_spares", "Spare sandboxes ready now.", registry=r)
        self.spares.set_function(lambda: float(spares() if spares is not None else 0))
        self.adopted = Counter(
            "sbx_sessions_from_spares_total",
            "Sessions that opened on a spare sandbox.",
            ["image"],
            registry=r,
        )
        self.starts = Counter(
            "sbx_sandbox_starts_total", "Sandboxes started.", ["image"], registry=r
        )
        self.start_failures = Counter(
            "sbx_sandbox_start_failures_total",
            "Sandboxes that failed to start.",
            ["image"],
            registry=r,
        )
        self.start_seconds = Histogram(
            "sbx_sandbox_start_seconds",
            "Time from create to guest handshake.",
            ["image"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.closed = Counter(
            "sbx_sessions_closed_total", "Sessions closed, by reason.", ["reason"], registry=r
        )
        self.tool_calls = Counter(
            "sbx_tool_calls_total",
            "Tool calls by tool and outcome.",
            ["tool", "outcome"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "sbx_tool_call_seconds",
            "Tool call latency.",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.exec_calls = Counter(
            "sbx_exec_calls_total", "exec calls by outcome.", ["outcome"], registry=r
        )
        self.exec_seconds = Histogram(
            "sbx_exec_seconds", "exec call latency.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.dropped = Counter(
            "sbx_stream_dropped_bytes_total",
            "Output dropped because a client read too slowly.",
            registry=r,
        )
        self.late_removals = Counter(
            "sbx_sandbox_removals_late_total",
            "Sandbox removals that missed their deadline (then retried in the background).",
            registry=r,
        )

    def session_started(self, image: str, seconds: float) -> None:
        self.starts.labels(image).inc()
        self.start_seconds.labels(image).observe(seconds)

    def session_failed(self, image: str, reason: str) -> None:
        self.start_failures.labels(image).inc()

    def session_closed(self, image: str, reason: str, lifetime: float) -> None:
        kind = reason.split(" ", maxsplit=1)[0] if reason else "closed"
        self.closed.labels(kind).inc()

    def session_adopted(self, image: str) -> None:
        self.adopted.labels(image=image).inc()

    def tool_call(self, tool: str, outcome: Outcome, seconds: float) -> None:
        self.tool_calls.labels(tool, outcome).inc()
        self.tool_seconds.labels(tool).observe(seconds)

    def exec_call(self, outcome: Outcome, seconds: float) -> None:
        self.exec_calls.labels(outcome).inc()
        self.exec_seconds.observe(seconds)

    def stream_dropped(self, nbytes: int) -> None:
        self.dropped.inc(nbytes)

    def removal_late(self) -> None:
        self.late_removals.inc()

    def watch_resilience(self, resilience: Resilience) -> None:
        """Show ``resilience``'s retries and breakers, read when scraped."""
        self.registry.register(_ResilienceCollector(resilience))

    def render(self) -> bytes:
        return generate_latest(self.registry)


_BREAKER_VALUES = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


class _ResilienceCollector(Collector):
    """Retries by operation and reason; each breaker's state and how often it opened."""

    def __init__(self, resilience: Resilience) -> None:
        self.resilience = resilience

    def describe(self) -> list[Metric]:
        return []  # names are known only when scraped

    def collect(self) -> Iterator[Metric]:
        retries = CounterMetricFamily(
            "sbx_retries",
            "Transient failures tried again, by operation and reason.",
            labels=["operation", "reason"],
        )
        for (operation, reason), count in sorted(self.resilience.retries.items()):
            retries.add_metric([operation, reason], float(count))
        yield retries
        state = GaugeMetricFamily(
            "sbx_breaker_state",
            "Circuit breakers: 0 closed, 1 half-open (probing), 2 open (failing fast).",
            labels=["breaker"],
        )
        opened = CounterMetricFamily(
            "sbx_breaker_opened", "How often each circuit breaker opened.", labels=["breaker"]
        )
        for name, breaker in list(self.resilience.breaker_items()):
            state.add_metric([name], _BREAKER_VALUES[breaker.state])
            opened.add_metric([name], float(breaker.opened))
        yield state
        yield opened
