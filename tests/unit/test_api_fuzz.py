"""Fuzz the HTTP API from its own OpenAPI document: no input may produce a 500.

The server runs as a separate process over the fake backend, so thousands of
generated requests cost no containers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def fake_api_url() -> Iterator[str]:
    env = {**os.environ, "SBX_TOKEN": TOKEN}
    env.pop("SBX_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.testing.fake_server", "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://"), url
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def api_schema(fake_api_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fake_api_url}/openapi.json")


# Streams that follow a run until it ends, and runs that would call the cloud
# API, are exercised by test_api.py with a scripted Messages API instead.
NOT_FUZZED = {("GET", "/v1/agent-runs/{run_id}/events"), ("POST", "/v1/agent-runs")}


def test_no_request_makes_the_server_fail(api_schema: schemathesis.BaseSchema) -> None:
    fuzzed = []
    calls = 0
    statuses: set[int] = set()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in NOT_FUZZED:
            continue
        fuzzed.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            calls += 1
            statuses.add(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])

        check()
    assert len(fuzzed) >= 12, fuzzed
    assert calls >= 10 * len(fuzzed)
    assert {200, 404, 422} <= statuses  # it reached real handlers, not only the validator
