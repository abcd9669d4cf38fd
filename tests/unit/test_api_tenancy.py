"""Tenants of one server: a token learns nothing of other owners' sessions and runs."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest
import trio

from tests.api_harness import ADMIN, ALICE, BOB, Api, new_session

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
