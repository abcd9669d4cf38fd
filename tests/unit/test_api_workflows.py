"""``POST /v1/workflows`` on the in-process API over the fake backend."""

from __future__ import annotations

import json
from typing import Any

from orchestrator import Config
from tests.api_harness import Api, live

SECRET = "api-secret-value"


def workflow(config: Config) -> dict[str, Any]:
    ws = config.sandbox.workdir
    return {
        "vars": {"n": 3},
        "secrets": {"token": {"env": "NEVER_READ_ON_THE_SERVER"}},
        "steps": [
            {"id": "write", "put": {"path": f"{ws}/a.py", "content": "print(6*${{ vars.n }})"}},
            {"id": "run", "needs": ["write"], "exec": f"python3 {ws}/a.py"},
            {
                "id": "use",
                "needs": ["run"],
                "exec": "echo ${{ steps.run.stdout }} ${{ secrets.token }}",
            },
            {"id": "fan", "foreach": [1, 2], "exec": "echo ${{ item }}"},
        ],
        "outputs": {"answer": "${{ steps.use.stdout }}"},
    }


async def test_a_workflow_runs_for_its_caller(api: Api, api_config: Config) -> None:
    async with api.client() as client:
        response = await client.post(
            "/v1/workflows",
            json={"workflow": workflow(api_config), "vars": {"n": 7}, "secrets": {"token": SECRET}},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["outputs"] == {"answer": "42 ***"}
    assert body["steps"]["run"]["status"] == "succeeded"
    assert body["steps"]["fan"]["items"][1]["stdout"] == "2"
    assert SECRET not in response.text
    assert live(api.backend) == []


async def test_step_events_stream(api: Api, api_config: Config) -> None:
    events: list[dict[str, Any]] = []
    async with (
        api.client() as client,
        client.stream(
            "POST",
            "/v1/workflows",
            json={"workflow": workflow(api_config), "secrets": {"token": SECRET}},
            headers={"Accept": "application/x-ndjson"},
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line:
                events.append(json.loads(line))
    kinds = [event["type"] for event in events]
    assert kinds[-1] == "workflow_finished"
    assert events[-1]["ok"] is True
    assert {"step_started", "step_finished"} <= set(kinds)
    finished = [e["step"] for e in events if e["type"] == "step_finished" and "index" not in e]
    assert finished.index("write") < finished.index("run") < finished.index("use")
    assert SECRET not in json.dumps(events)


async def test_a_workflow_that_does_not_load_is_a_422_with_its_line(api: Api) -> None:
    text = "steps:\n  - id: a\n    exec: 'true'\n  - id: b\n    needs: [nope]\n    exec: 'true'\n"
    async with api.client() as client:
        response = await client.post("/v1/workflows", json={"workflow": text})
        as_path = await client.post("/v1/workflows", json={"workflow": "/etc/passwd"})
        missing = await client.post(
            "/v1/workflows",
            json={"workflow": {"secrets": {"t": {"env": "HOME"}}, "steps": [{"exec": "true"}]}},
        )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_workflow"
    assert error["field"] == "workflow.steps[1].needs[0]"
    assert error["message"].startswith("<workflow>:5: steps[1].needs[0]: unknown step 'nope'")
    # Text is never read as a path on the server.
    assert as_path.status_code == 422
    assert "root:" not in as_path.text
    # Secrets come in the request, never from the server's environment.
    assert missing.status_code == 422
    assert "secret 't' has no value: pass it" in missing.json()["error"]["message"]


async def test_a_workflow_may_not_read_the_servers_files(api: Api) -> None:
    body = {"workflow": {"steps": [{"put": {"path": "/tmp/x", "from": "/etc/passwd"}}]}}
    async with api.client() as client:
        response = await client.post("/v1/workflows", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "workflow.steps[0].put.from"


async def test_agent_steps_follow_the_servers_rules_for_keys_and_addresses(api: Api) -> None:
    body = {
        "workflow": {"steps": [{"agent": {"task": "hi", "base_url": "https://evil.example.com"}}]}
    }
    async with api.client() as client:
        response = await client.post("/v1/workflows", json=body)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "base_url_not_allowed"
    assert live(api.backend) == []


async def test_a_failed_workflow_is_still_a_result(api: Api) -> None:
    body = {"workflow": {"steps": [{"id": "bad", "exec": "exit 3"}]}}
    async with api.client(token=None) as anonymous:
        unauthorized = await anonymous.post("/v1/workflows", json=body)
    async with api.client() as client:
        response = await client.post("/v1/workflows", json=body)
    assert unauthorized.status_code == 401
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["steps"]["bad"]["exit_code"] == 3
