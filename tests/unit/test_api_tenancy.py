"""Tenants of one server: a token learns nothing of other owners' sessions, runs or metrics."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest
import trio
from pydantic import SecretStr

from orchestrator import Config, FakeBackend
from orchestrator.errors import SessionNotFound
from tests.api_harness import ADMIN, ALICE, BOB, Api, new_session, running_api

# Every route that names a session: method, path after the id, JSON body, extra headers.
SESSION_ROUTES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("GET", "", None, {}),
    ("DELETE", "", None, {}),
    ("POST", "/exec", {"command": "true"}, {}),
    ("POST", "/exec", {"command": "true"}, {"Accept": "application/x-ndjson"}),
    ("POST", "/exec", {"command": []}, {}),
    ("POST", "/tools", {"tool_uses": []}, {}),
    ("GET", "/files?path=/workspace/x", None, {}),
    ("PUT", "/files?path=/workspace/x", None, {}),
    ("DELETE", "/files?path=/workspace/x", None, {}),
    ("GET", "/files/list?path=/workspace", None, {}),
    ("GET", "/screenshot", None, {}),
    ("POST", "/view", None, {}),
    ("POST", "/snapshot", None, {}),
]

RUN_ROUTES = [("GET", ""), ("DELETE", ""), ("GET", "/events"), ("GET", "/transcript")]


def answer(response: httpx.Response, the_id: str) -> tuple[int, Any, list[str]]:
    """What a client can see of a response, with the id it asked about blanked out."""
    body = json.loads(response.text.replace(the_id, "<id>"))
    headers = sorted(name for name in response.headers if name != "date")
    return response.status_code, body, headers


async def test_another_owners_session_answers_exactly_like_a_missing_one(api: Api) -> None:
    async with api.client(ALICE) as alice, api.client(BOB) as bob, api.client(ADMIN) as admin:
        mine = await new_session(alice)
        unknown = secrets.token_hex(6)  # the shape of a real session id
        for method, suffix, body, headers in SESSION_ROUTES:
            foreign = await bob.request(
                method, f"/v1/sessions/{mine}{suffix}", json=body, headers=headers
            )
            missing = await bob.request(
                method, f"/v1/sessions/{unknown}{suffix}", json=body, headers=headers
            )
            assert answer(foreign, mine) == answer(missing, unknown), (method, suffix)
            status, error, _ = answer(foreign, mine)
            assert status == 404, (method, suffix, foreign.text)
            assert error == {
                "error": {
                    "type": "session_not_found",
                    "message": "no open session '<id>'; list yours with GET /v1/sessions",
                    "remedy": SessionNotFound.remedy,
                    "retryable": False,
                    "retry_after": None,
                }
            }
        # Nothing bob asked for happened to alice's session; admins still see everything.
        assert (await alice.get(f"/v1/sessions/{mine}")).json()["state"] == "ready"
        assert (await admin.get(f"/v1/sessions/{mine}")).json()["owner"] == "alice"
        assert [s["id"] for s in (await bob.get("/v1/sessions")).json()["sessions"]] == []
        assert (await admin.delete(f"/v1/sessions/{mine}")).status_code == 204


async def test_another_owners_agent_run_answers_exactly_like_a_missing_one(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the run fails at once: no key
    async with api.client(ADMIN) as admin, api.client(BOB) as bob:
        started = await admin.post("/v1/agent-runs", json={"task": "hi"})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        with trio.fail_after(10):
            while (await admin.get(f"/v1/agent-runs/{run_id}")).json()["status"] == "running":
                await trio.sleep(0.05)
        unknown = f"run_{secrets.token_hex(6)}"
        headers = {"Accept": "application/x-ndjson"}
        for method, suffix in RUN_ROUTES:
            path = f"/v1/agent-runs/{{}}{suffix}"
            foreign = await bob.request(method, path.format(run_id), headers=headers)
            missing = await bob.request(method, path.format(unknown), headers=headers)
            assert answer(foreign, run_id) == answer(missing, unknown), (method, suffix)
            assert foreign.status_code == 404
            assert foreign.json()["error"]["type"] == "run_not_found"
        assert (await bob.get("/v1/agent-runs")).json() == []
        assert (await admin.get(f"/v1/agent-runs/{run_id}")).json()["status"] == "failed"


# -- /metrics ------------------------------------------------------------------------------

SCRAPE = "scrape-secret-2222"


async def test_a_metrics_token_guards_metrics_and_opens_nothing_else(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    api_config.api.metrics_token = SecretStr(SCRAPE)
    async with running_api(api_config, fake_backend) as api:
        answers = {}
        for name, token in [
            ("none", None),
            ("wrong", "nope"),
            ("tenant", ALICE),
            ("metrics", SCRAPE),
            ("admin", ADMIN),
        ]:
            async with api.client(token) as client:
                answers[name] = await client.get("/metrics")
        async with api.client(SCRAPE) as scraper:
            sessions = await scraper.get("/v1/sessions")
    for name in ("none", "wrong", "tenant"):
        assert answers[name].status_code == 401, name
        assert answers[name].headers["www-authenticate"] == "Bearer"
        error = answers[name].json()["error"]
        assert error["type"] == "unauthorized"
        assert "api.metrics_token" in error["message"]
    assert answers["metrics"].status_code == answers["admin"].status_code == 200
    assert "sbx_sessions" in answers["metrics"].text
    assert sessions.status_code == 401  # the metrics token is not an API token
    assert SCRAPE not in repr(api_config)
    assert SCRAPE not in str(api_config.model_dump())


def test_metrics_need_a_token_off_loopback_unless_one_is_configured() -> None:
    from orchestrator.api.auth import Authenticator, hash_token
    from orchestrator.api.errors import ApiError
    from orchestrator.config import ApiConfig, ApiToken

    tokens = [
        ApiToken(owner="alice", sha256=hash_token(ALICE)),
        ApiToken(owner="ops", sha256=hash_token(ADMIN), admin=True),
    ]
    config = ApiConfig(tokens=tokens)
    assert Authenticator(config, "127.0.0.1:8765", env_token="").metrics_open
    public = Authenticator(config, "0.0.0.0:8765", env_token="")
    assert not public.metrics_open
    for header in ("", f"Bearer {ALICE}", "Bearer nope", f"Basic {ADMIN}"):
        with pytest.raises(ApiError) as refused:
            public.authorize_metrics(header)
        assert refused.value.status == 401
    public.authorize_metrics(f"Bearer {ADMIN}")
    digest = ApiConfig(tokens=tokens, metrics_token=SecretStr(f"sha256:{hash_token(SCRAPE)}"))
    Authenticator(digest, "0.0.0.0:8765", env_token="").authorize_metrics(f"Bearer {SCRAPE}")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ApiConfig(metrics_token=SecretStr("sha256:abc"))
