"""The HTTP API in-process over the fake backend: auth, validation, exec, tools, files, runs."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from typing import Any

import httpx
import pytest
import trio

from orchestrator import Config, FakeBackend
from orchestrator.errors import ConfigError
from tests.api_harness import ADMIN, ALICE, BOB, Api, live, new_session, running_api

# -- auth -------------------------------------------------------------------------------


async def test_requests_without_or_with_a_wrong_token_are_401(api: Api) -> None:
    async with api.client(None) as anon, api.client("nope") as wrong:
        missing = await anon.get("/v1/sessions")
        bad = await wrong.post("/v1/sessions", json={})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["type"] == "unauthorized"
    assert "Authorization: Bearer" in missing.json()["error"]["message"]
    assert bad.status_code == 401
    assert live(api.backend) == []


async def test_a_token_only_sees_and_touches_its_owners_sessions(api: Api) -> None:
    async with api.client(ALICE) as alice, api.client(BOB) as bob, api.client(ADMIN) as admin:
        mine = await new_session(alice)
        assert [s["id"] for s in (await bob.get("/v1/sessions")).json()["sessions"]] == []
        for method, path, body in [
            ("GET", f"/v1/sessions/{mine}", None),
            ("POST", f"/v1/sessions/{mine}/exec", {"command": "true"}),
            ("GET", f"/v1/sessions/{mine}/files?path=/x", None),
            ("DELETE", f"/v1/sessions/{mine}", None),
        ]:
            response = await bob.request(method, path, json=body)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"]["type"] == "session_not_found"
        listed = (await admin.get("/v1/sessions")).json()["sessions"]
        assert [(s["id"], s["owner"]) for s in listed] == [(mine, "alice")]
        assert (await alice.delete(f"/v1/sessions/{mine}")).status_code == 204
    assert live(api.backend) == []


def test_no_tokens_and_no_anonymous_mode_refuses_to_start(
    fake_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.api.auth import Authenticator

    monkeypatch.delenv("SBX_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="no API tokens configured"):
        Authenticator(fake_config.api, "127.0.0.1:8765")
    fake_config.api.allow_anonymous = True
    with pytest.raises(ConfigError, match="loopback"):
        Authenticator(fake_config.api, "0.0.0.0:8765")
    assert Authenticator(fake_config.api, "127.0.0.1:8765").anonymous
    monkeypatch.setenv("SBX_TOKEN", "t")
    assert not Authenticator(fake_config.api, "127.0.0.1:8765").anonymous


# -- bad input -----------------------------------------------------------------------------


async def test_bad_input_is_a_4xx_naming_the_field(api: Api) -> None:
    async with api.client() as c:
        unknown = await c.post("/v1/sessions", json={"imaeg": "x"})
        wrong_type = await c.post("/v1/sessions", json={"cpus": "lots"})
        malformed = await c.post(
            "/v1/sessions", content=b"{not json", headers={"content-type": "application/json"}
        )
        no_session = await c.post("/v1/sessions/nope/exec", json={"command": "true"})
        no_image = await c.post("/v1/sessions", json={"image": "sbx-nope"})
        too_big = await c.post("/v1/sessions/x/exec", content=b"x" * (api.config.api.max_body + 1))
        sid = await new_session(c)
        bad_command = await c.post(f"/v1/sessions/{sid}/exec", json={"command": []})
        escape = await c.get(f"/v1/sessions/{sid}/files", params={"path": "/etc/passwd"})
        relative = await c.get(f"/v1/sessions/{sid}/files", params={"path": "etc"})
        missing_file = await c.get(
            f"/v1/sessions/{sid}/files", params={"path": api.config.sandbox.workdir + "/nope"}
        )
        not_allowed = await c.post("/v1/sessions", json={"privileged": True})
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "imaeg")
    assert "unknown field" in unknown.json()["error"]["message"]
    assert (wrong_type.status_code, wrong_type.json()["error"]["field"]) == (422, "cpus")
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "malformed_json"
    assert no_session.status_code == 404
    assert no_image.status_code == 422
    assert "sbx images build nope" in no_image.json()["error"]["message"]
    assert too_big.status_code == 413
    assert bad_command.status_code in {400, 422}
    assert escape.status_code == 403
    assert escape.json()["error"]["type"] == "path_not_allowed"
    assert relative.status_code == 400
    assert "absolute" in relative.json()["error"]["message"]
    assert missing_file.status_code == 404
    assert not_allowed.status_code == 422


# -- exec ------------------------------------------------------------------------------


async def test_exec_returns_the_result_fields(api: Api) -> None:
    async with api.client() as c:
        sid = await new_session(c)
        r = (
            await c.post(
                f"/v1/sessions/{sid}/exec",
                json={"command": "cat; printf '\\377' >&2; exit 3", "stdin": "in"},
            )
        ).json()
        b = (
            await c.post(
                f"/v1/sessions/{sid}/exec",
                json={"command": ["cat"], "stdin_b64": base64.b64encode(b"\0x").decode()},
            )
        ).json()
    assert (r["exit_code"], r["stdout"], r["stderr"]) == (3, "in", None)
    assert base64.b64decode(r["stderr_b64"]) == b"\xff"
    assert r["timed_out"] is False
    assert r["truncated"] is False
    assert b["stdout"] == "\0x"


async def test_exec_streams_sse_and_ndjson_in_order(api: Api) -> None:
    command = {"command": "for i in 1 2 3; do echo $i; sleep 0.1; echo e$i >&2; done"}
    async with api.client() as c:
        sid = await new_session(c)
        async with c.stream(
            "POST",
            f"/v1/sessions/{sid}/exec",
            json=command,
            headers={"Accept": "application/x-ndjson"},
        ) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            events = [json.loads(line) async for line in response.aiter_lines() if line]
        async with c.stream(
            "POST",
            f"/v1/sessions/{sid}/exec",
            json=command,
            headers={"Accept": "text/event-stream"},
        ) as response:
            text = (await response.aread()).decode()
    assert [(e["type"], e.get("data")) for e in events[:-1]] == [
        ("stdout", "1\n"),
        ("stderr", "e1\n"),
        ("stdout", "2\n"),
        ("stderr", "e2\n"),
        ("stdout", "3\n"),
        ("stderr", "e3\n"),
    ]
    assert events[-1]["type"] == "result"
    assert events[-1]["exit_code"] == 0
    assert text.startswith("event: stdout\ndata: {")
    assert text.count("event: ") == 7
    assert text.rstrip().split("\n")[-2] == "event: result"


async def test_a_client_that_disconnects_cancels_the_command(api: Api) -> None:
    marker = f"sbxapi-{secrets.token_hex(4)}"
    async with api.client() as c:
        sid = await new_session(c)
        async with c.stream(
            "POST",
            f"/v1/sessions/{sid}/exec",
            json={"command": f"echo go; exec -a {marker} sleep 300"},
            headers={"Accept": "application/x-ndjson"},
        ) as response:
            async for line in response.aiter_lines():
                assert json.loads(line)["data"] == "go\n"
                break
        # The connection is closed; the command must go.
        with trio.fail_after(10):
            while subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False).stdout:
                await trio.sleep(0.1)
        still = await c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo ok"})
    assert still.json()["stdout"] == "ok\n"


# -- tools, files ---------------------------------------------------------------------


async def test_tools_json_and_stream(api: Api) -> None:
    uses = [
        {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "echo one"}},
        {"type": "tool_use", "id": "t2", "name": "nope", "input": {}},
    ]
    async with api.client() as c:
        sid = await new_session(c)
        plain = await c.post(f"/v1/sessions/{sid}/tools", json={"tool_uses": uses})
        async with c.stream(
            "POST",
            f"/v1/sessions/{sid}/tools",
            json={"tool_uses": uses},
            headers={"Accept": "application/x-ndjson"},
        ) as response:
            events = [json.loads(line) async for line in response.aiter_lines() if line]
        duplicate = await c.post(
            f"/v1/sessions/{sid}/tools", json={"tool_uses": [uses[0], uses[0]]}
        )
    results = plain.json()["tool_results"]
    assert results[0]["content"] == [{"type": "text", "text": "one"}]
    assert results[1]["is_error"] is True
    kinds = [e["type"] for e in events]
    assert kinds.count("call_finished") == 2
    assert kinds[-1] == "tool_results"
    assert events[-1]["tool_results"] == results
    assert duplicate.status_code == 400
    assert "duplicate tool_use_id" in duplicate.json()["error"]["message"]


async def test_files_round_trip(api: Api) -> None:
    data = bytes(range(256)) * 100
    root = api.config.sandbox.workdir
    async with api.client() as c:
        sid = await new_session(c)
        put = await c.put(
            f"/v1/sessions/{sid}/files", params={"path": f"{root}/d/blob"}, content=data
        )
        got = await c.get(f"/v1/sessions/{sid}/files", params={"path": f"{root}/d/blob"})
        listing = await c.get(f"/v1/sessions/{sid}/files/list", params={"path": f"{root}/d"})
        deleted = await c.delete(
            f"/v1/sessions/{sid}/files", params={"path": f"{root}/d", "recursive": True}
        )
        gone = await c.get(f"/v1/sessions/{sid}/files", params={"path": f"{root}/d/blob"})
    assert put.json() == {"path": f"{root}/d/blob", "size": len(data)}
    assert got.content == data
    assert [e["name"] for e in listing.json()["entries"]] == ["blob"]
    assert deleted.status_code == 204
    assert gone.status_code == 404


# -- agent runs --------------------------------------------------------------------------


async def test_agent_run_streams_events_and_serves_its_transcript(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.testing.messages_api import MessagesAPIServer, Reply, ToolUseReply

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    fake_claude = MessagesAPIServer(
        [
            Reply(
                text="Looking.", tool_uses=[ToolUseReply(name="bash", input={"command": "echo hi"})]
            ),
            Reply(text="Done."),
        ]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(fake_claude.serve)
        api.config.agent.allowed_base_urls = [fake_claude.url]
        api.config.agent.share_server_key = ["alice"]
        async with api.client() as c, api.client(BOB) as bob:
            started = await c.post(
                "/v1/agent-runs", json={"task": "say hi", "base_url": fake_claude.url}
            )
            assert started.status_code == 202
            run_id = started.json()["id"]
            async with c.stream(
                "GET", f"/v1/agent-runs/{run_id}/events", headers={"Accept": "application/x-ndjson"}
            ) as response:
                events = [json.loads(line) async for line in response.aiter_lines() if line]
            info = (await c.get(f"/v1/agent-runs/{run_id}")).json()
            transcript = await c.get(f"/v1/agent-runs/{run_id}/transcript")
            foreign = await bob.get(f"/v1/agent-runs/{run_id}")
        nursery.cancel_scope.cancel()
    kinds = [e["type"] for e in events if e["type"] != "keepalive"]
    assert kinds[0] == "started"
    assert "tool_finished" in kinds
    assert kinds[-1] == "end"
    assert "".join(e["text"] for e in events if e["type"] == "text") == "Looking.\nDone.\n"
    assert info["status"] == "finished"
    assert info["final_text"] == "Done."
    lines = [json.loads(x) for x in transcript.text.splitlines()]
    assert lines[0]["type"] == "start"
    assert lines[-1]["type"] == "end"
    assert foreign.status_code == 404


async def test_unknown_tool_family_for_a_run_is_422(api: Api) -> None:
    async with api.client() as c:
        r = await c.post("/v1/agent-runs", json={"task": "x", "tools": ["teleport"]})
    assert r.status_code == 422
    assert "teleport" in r.json()["error"]["message"]


# -- operations, shutdown -------------------------------------------------------------------


async def test_health_readiness_and_metrics(api: Api) -> None:
    async with api.client(None) as c:
        health = await c.get("/healthz")
        ready = await c.get("/readyz")
        async with api.client() as authed:
            sid = await new_session(authed)
            await authed.post(
                f"/v1/sessions/{sid}/tools",
                json={
                    "tool_uses": [
                        {
                            "type": "tool_use",
                            "id": "m1",
                            "name": "bash",
                            "input": {"command": "true"},
                        }
                    ]
                },
            )
            await authed.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
        metrics = (await c.get("/metrics")).text
        openapi = (await c.get("/openapi.json")).json()
    assert health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert ready.json()["checks"]["engine"]["ok"] is True
    assert "sbx_sessions 1.0" in metrics
    assert 'sbx_tool_calls_total{outcome="ok",tool="bash"} 1.0' in metrics
    assert 'sbx_exec_calls_total{outcome="ok"} 1.0' in metrics
    assert 'sbx_sandbox_starts_total{image="sbx-code-runner"} 1.0' in metrics
    for path in (
        "/v1/sessions",
        "/v1/sessions/{session_id}/exec",
        "/v1/sessions/{session_id}/tools",
        "/v1/sessions/{session_id}/files",
    ):
        assert path in openapi["paths"]


async def test_graceful_shutdown_lets_a_call_finish_then_removes_every_sandbox(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    outcome: dict[str, Any] = {}
    async with running_api(api_config, fake_backend) as api:
        url = api.url
        client = api.client()
        sid = await new_session(client)
        await new_session(client)

        async def slow_call() -> None:
            r = await client.post(
                f"/v1/sessions/{sid}/exec", json={"command": "sleep 1; echo done"}
            )
            outcome["result"] = r.json()

        async with trio.open_nursery() as calls:
            calls.start_soon(slow_call)
            await trio.sleep(0.3)
            api.shutdown.set()
            await trio.sleep(0.2)
            with pytest.raises(httpx.ConnectError):
                await httpx.AsyncClient().get(url + "/healthz")
        await client.aclose()
    assert outcome["result"]["stdout"] == "done\n"
    assert live(fake_backend) == []


async def test_a_stalled_client_loses_output_with_a_marker_but_gets_the_result(
    api_config: Config, fake_backend: FakeBackend
) -> None:
    api_config.api.stall_timeout = 0.3
    async with running_api(api_config, fake_backend) as api:
        async with api.client() as c:
            sid = await new_session(c)
            events: list[dict[str, Any]] = []
            async with c.stream(
                "POST",
                f"/v1/sessions/{sid}/exec",
                json={"command": "head -c 60000000 /dev/zero | tr '\\0' x", "max_output": 64 << 20},
                headers={"Accept": "application/x-ndjson"},
            ) as response:
                lines = response.aiter_lines()
                events.append(json.loads(await lines.__anext__()))
                await trio.sleep(3)  # a client that stops reading
                async for line in lines:
                    events.append(json.loads(line))
            metrics = (await c.get("/metrics")).text
    dropped = [e for e in events if e["type"] == "dropped"]
    streamed = sum(len(e["data"]) for e in events if e["type"] == "stdout")
    assert dropped
    assert streamed + sum(e["bytes"] for e in dropped) >= 60_000_000 * 0.9
    assert streamed < 60_000_000
    assert events[-1]["type"] == "result"
    assert events[-1]["stdout_bytes"] == 60_000_000
    assert "sbx_stream_dropped_bytes_total 0.0" not in metrics


async def test_desktop_routes_need_a_desktop_and_an_owner(api: Api) -> None:
    async with api.client() as c, api.client(BOB) as bob:
        sid = await new_session(c)  # a code runner: no desktop
        shot = await c.get(f"/v1/sessions/{sid}/screenshot")
        foreign = await bob.post(f"/v1/sessions/{sid}/view")
        page = await c.get(f"/desktop/{sid}/not-a-token/")
    assert shot.status_code in {409, 400}
    assert "desktop" in shot.json()["error"]["message"].lower()
    assert foreign.status_code == 404
    assert page.status_code in {403, 404}


async def test_asking_a_code_runner_for_a_desktop_is_a_422(api: Api) -> None:
    async with api.client() as c:
        r = await c.post("/v1/sessions", json={"desktop": True})
        s = await c.post("/v1/sessions", json={"screen": "1920x1080"})
    assert r.status_code == 422
    assert "image='desktop'" in r.json()["error"]["message"]
    assert s.status_code == 422
    assert live(api.backend) == []
