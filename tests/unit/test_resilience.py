"""Retries of transient failures only, and circuit breakers that open, fail fast, probe and
close; the engine's calls use both, and /metrics shows them."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest
import requests
import trio
import trio.testing

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.config import ResilienceConfig
from orchestrator.errors import (
    DependencyDown,
    EngineError,
    EngineUnavailable,
    ImageNotFound,
    SessionNotFound,
)
from orchestrator.metrics import PrometheusObserver
from orchestrator.resilience import BreakerState, CircuitBreaker, Resilience, RetryPolicy
from orchestrator.resilience.retries import with_retries

FAST = RetryPolicy(attempts=4, first_wait=0.01, max_wait=0.02, deadline=30)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **kw: Any) -> CircuitBreaker:
    return CircuitBreaker("engine", failures=3, window=10, reset_after=5, clock=clock, **kw)


# -- the breaker ---------------------------------------------------------------------------


def test_failures_within_the_window_open_the_breaker_and_calls_fail_fast() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(2):
        breaker.allow()
        breaker.failed("connection refused")
    assert breaker.state is BreakerState.CLOSED
    breaker.allow()
    breaker.failed("connection refused")
    assert breaker.state is BreakerState.OPEN
    clock.now += 1
    with pytest.raises(DependencyDown) as caught:
        breaker.allow()
    assert caught.value.breaker == "engine"
    assert caught.value.retryable and caught.value.retry_after == pytest.approx(4)
    assert "connection refused" in str(caught.value)
    assert breaker.opened == 1


def test_failures_spread_wider_than_the_window_do_not_open_it() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(6):
        breaker.allow()
        breaker.failed("slow")
        clock.now += 6  # two failures at most within any 10 s
    assert breaker.state is BreakerState.CLOSED


def test_after_the_reset_one_probe_goes_through_and_its_success_closes() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.failed("down")
    clock.now += 5
    breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(DependencyDown):
        breaker.allow()  # others wait for the probe's verdict
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    breaker.allow()


def test_a_failed_probe_opens_it_again_for_another_reset_period() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.failed("down")
    clock.now += 5
    breaker.allow()
    breaker.failed("still down")
    assert breaker.state is BreakerState.OPEN and breaker.opened == 2
    clock.now += 4
    with pytest.raises(DependencyDown, match="still down"):
        breaker.allow()


def test_guard_counts_only_what_the_caller_says_and_a_cancelled_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(5):
        with pytest.raises(SessionNotFound), breaker.guard(lambda e: False):
            raise SessionNotFound("a user's mistake")
    assert breaker.state is BreakerState.CLOSED
    for _ in range(3):
        with pytest.raises(EngineUnavailable), breaker.guard(lambda e: True):
            raise EngineUnavailable("down")
    clock.now += 5
    with pytest.raises(KeyboardInterrupt), breaker.guard(lambda e: True):
        raise KeyboardInterrupt  # no verdict on the dependency
    assert breaker.state is BreakerState.HALF_OPEN
    with breaker.guard(lambda e: True):
        pass  # the slot was freed: this probe goes through, and closes it
    assert breaker.state is BreakerState.CLOSED


def test_the_hub_makes_breakers_once_with_the_configured_thresholds() -> None:
    hub = Resilience(ResilienceConfig(breaker_failures=2, breaker_window=7, breaker_reset=3))
    engine = hub.breaker("engine")
    assert hub.breaker("engine") is engine
    assert (engine.failures, engine.window, engine.reset_after) == (2, 7, 3)
    engine.failed("x")
    engine.failed("y")
    assert hub.open_breakers() == ["engine"]
    assert hub.breakers()["engine"]["state"] == "open"


# -- retries --------------------------------------------------------------------------------


async def test_transient_failures_are_tried_again_and_counted() -> None:
    tries: list[int] = []
    counted: list[tuple[str, str]] = []
    cleaned: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise EngineUnavailable("refused")
        return "made"

    async def clean() -> None:
        cleaned.append(len(tries))

    result = await with_retries(
        "create",
        flaky,
        policy=FAST,
        on_retry=lambda op, why: counted.append((op, why)),
        before_retry=clean,
    )
    assert result == "made"
    assert len(tries) == 3
    assert counted == [("create", "engine_unavailable")] * 2
    assert cleaned == [1, 2]  # before each retry, never before the first try


async def test_a_failure_that_is_not_transient_is_raised_at_once() -> None:
    tries: list[int] = []

    async def refused() -> None:
        tries.append(1)
        raise ImageNotFound("sbx-nope:latest")

    with pytest.raises(ImageNotFound):
        await with_retries("create", refused, policy=FAST)
    assert tries == [1]


async def test_retries_stop_after_the_attempts_with_the_last_failure() -> None:
    tries: list[int] = []

    async def down() -> None:
        tries.append(1)
        raise EngineUnavailable(f"refused #{len(tries)}")

    with pytest.raises(EngineUnavailable, match="refused #4"):
        await with_retries("inspect", down, policy=FAST)
    assert len(tries) == 4


async def test_no_new_try_starts_after_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    tries: list[float] = []

    async def slow_failure() -> None:
        tries.append(trio.current_time())
        await trio.sleep(4)
        raise EngineUnavailable("refused")

    policy = RetryPolicy(attempts=10, first_wait=0.1, max_wait=0.1, deadline=10)
    with pytest.raises(EngineUnavailable):
        await with_retries("start", slow_failure, policy=policy)
    assert len(tries) == 3  # at 0, ~4.1 and ~8.2; none after 10 s


# -- the engine's calls ------------------------------------------------------------------------


def _api_error(status: int, text: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(text, response=response, explanation=text)


def _engine(**config: Any) -> DockerEngine:
    hub = Resilience(ResilienceConfig(first_wait=0.01, max_wait=0.02, **config))
    return DockerEngine("unix:///nonexistent.sock", resilience=hub)


async def test_an_engine_5xx_is_retried_and_counted() -> None:
    engine = _engine()
    answers = [_api_error(503, "the daemon is busy"), _api_error(502, "bad gateway"), "id"]

    def create() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await engine.call("creating sandbox x", create, retry="create") == "id"
    assert engine.resilience.retries == {("create", "engine_error"): 2}
    assert engine.breaker.state is BreakerState.CLOSED


async def test_a_permanent_engine_refusal_is_not_retried_and_does_not_trip_the_breaker() -> None:
    engine = _engine(breaker_failures=2)
    calls: list[int] = []

    def start() -> None:
        calls.append(1)
        raise _api_error(500, "OCI runtime create failed: exec: /bin/nope: no such file")

    for _ in range(3):
        with pytest.raises(EngineError, match="OCI runtime") as caught:
            await engine.call("starting sandbox x", start, retry="start")
        assert not caught.value.retryable
    assert len(calls) == 3
    assert engine.breaker.state is BreakerState.CLOSED


async def test_an_engine_that_keeps_failing_opens_its_breaker_then_calls_fail_fast() -> None:
    engine = _engine(attempts=2, breaker_failures=4, breaker_reset=0.3)
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise requests.exceptions.ConnectionError("connection refused")

    for _ in range(2):
        with pytest.raises(EngineUnavailable):
            await engine.call("inspecting sandbox x", refused, retry="inspect")
    assert len(calls) == 4 and engine.breaker.state is BreakerState.OPEN
    with pytest.raises(DependencyDown) as caught:
        await engine.call("inspecting sandbox x", refused, retry="inspect")
    assert len(calls) == 4  # failed fast: the engine was not asked
    assert caught.value.breaker == "engine"
    # Removal bypasses the breaker: cleaning up is always tried.
    with pytest.raises(EngineUnavailable):
        await engine.call("removing sandbox x", refused, guarded=False)
    assert len(calls) == 5
    await trio.sleep(0.35)
    assert await engine.call("inspecting sandbox x", lambda: "back", retry="inspect") == "back"
    assert engine.breaker.state is BreakerState.CLOSED


def test_metrics_show_retries_and_breakers() -> None:
    hub = Resilience()
    hub.retried("create", "engine_unavailable")
    hub.retried("create", "engine_unavailable")
    hub.breaker("image:sbx-x:latest").failed("guest never greeted")
    engine = hub.breaker("engine")
    for _ in range(5):
        engine.failed("refused")
    observer = PrometheusObserver(lambda: 0)
    observer.watch_resilience(hub)
    text = observer.render().decode()
    assert 'sbx_retries_total{operation="create",reason="engine_unavailable"} 2.0' in text
    assert 'sbx_breaker_state{breaker="engine"} 2.0' in text
    assert 'sbx_breaker_state{breaker="image:sbx-x:latest"} 0.0' in text
    assert 'sbx_breaker_opened_total{breaker="engine"} 1.0' in text
