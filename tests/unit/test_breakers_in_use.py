"""Breakers where sessions meet them: an image whose sandboxes keep failing to start fails
fast, over the Python API and as a typed 503 over HTTP, and /readyz shows it."""

from __future__ import annotations

import pytest

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.errors import DependencyDown, SandboxStartError
from tests.api_harness import Api, running_api


async def test_an_image_that_keeps_failing_to_start_fails_fast(
    orch: Orchestrator, fake_backend: FakeBackend
) -> None:
    breaker = orch.resilience.breaker("image:sbx-code-runner")
    breaker.failures = 2
    for _ in range(2):
        fake_backend.fail_next_start = "the guest never said hello"
        with pytest.raises(SandboxStartError):
            async with orch.session(image="code-runner"):
                pass
    made = len(fake_backend.sandboxes)
    with pytest.raises(DependencyDown) as caught:
        async with orch.session(image="code-runner"):
            pass
    assert caught.value.breaker == "image:sbx-code-runner"
    assert "the guest never said hello" in str(caught.value)
    assert len(fake_backend.sandboxes) == made  # nothing was created for it
    # Another image is not held back by this one's breaker.
    async with orch.session(image="desktop") as other:
        assert (await other.exec(["true"])).exit_code == 0


async def test_over_http_an_open_breaker_is_a_503_naming_it_with_retry_after(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    api_config.resilience.breaker_failures = 1
    api_config.resilience.breaker_reset = 30
    async with running_api(api_config, fake_backend) as api:
        await _fail_one_start(api, fake_backend)
        async with api.client() as client:
            refused = await client.post("/v1/sessions", json={"image": "code-runner"})
            ready = await client.get("/readyz")
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["type"] == "dependency_down"
    assert error["retryable"] is True and 25 <= error["retry_after"] <= 30
    assert refused.headers["retry-after"] in {str(n) for n in range(25, 31)}
    assert "image:sbx-code-runner" in error["message"]
    breakers = ready.json()["breakers"]
    assert breakers["image:sbx-code-runner"]["state"] == "open"


async def _fail_one_start(api: Api, fake_backend: FakeBackend) -> None:
    fake_backend.fail_next_start = "the guest never said hello"
    async with api.client() as client:
        failed = await client.post("/v1/sessions", json={"image": "code-runner"})
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["type"] == "sandbox_start_failed"
