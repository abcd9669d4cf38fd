"""The OpenAPI schema (bearer scheme, typed stream events) and docs pages that work offline."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, TypeAdapter

from orchestrator.api.stream_events import STREAM_EVENT_SCHEMAS
from tests.api_harness import Api, new_session


async def _schema(api: Api) -> dict[str, Any]:
    async with api.client(None) as anon:
        response = await anon.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


async def test_the_schema_declares_the_bearer_scheme_where_a_token_is_needed(api: Api) -> None:
    schema = await _schema(api)
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`sbx token new`); the CLI sends SBX_TOKEN.",
    }
    paths = schema["paths"]
    assert paths["/v1/sessions"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/v1/sessions/{session_id}/exec"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/metrics"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/healthz"]["get"]
    assert "security" not in paths["/readyz"]["get"]


async def test_stream_events_are_typed_in_the_schema(api: Api) -> None:
    schema = await _schema(api)
    components = schema["components"]["schemas"]
    content = schema["paths"]["/v1/sessions/{session_id}/exec"]["post"]["responses"]["200"][
        "content"
    ]
    ref = {"$ref": "#/components/schemas/ExecStreamEvent"}
    assert content["text/event-stream"]["schema"] == ref
    assert content["application/x-ndjson"]["schema"] == ref
    assert "application/json" in content  # the plain answer stays
    events = [alt["$ref"].rsplit("/", 1)[1] for alt in components["ExecStreamEvent"]["anyOf"]]
    assert events == ["ExecOutputEvent", "ExecResultEvent", "DroppedEvent", "StreamErrorEvent"]
    output = components["ExecOutputEvent"]["properties"]["type"]
    assert output["enum"] == ["stdout", "stderr"]
    for name in STREAM_EVENT_SCHEMAS:
        for alt in components[name]["anyOf"]:
            assert alt["$ref"].rsplit("/", 1)[1] in components  # every reference resolves
    tools = schema["paths"]["/v1/sessions/{session_id}/tools"]["post"]["responses"]["200"]
    assert tools["content"]["text/event-stream"]["schema"]["$ref"].endswith("ToolsStreamEvent")


async def test_a_real_stream_matches_its_declared_events(api: Api) -> None:
    models: tuple[type[BaseModel], ...] = STREAM_EVENT_SCHEMAS["ExecStreamEvent"]
    adapters = {model: TypeAdapter(model) for model in models}
    async with api.client() as client:
        session = await new_session(client)
        response = await client.post(
            f"/v1/sessions/{session}/exec",
            json={"command": "echo out; echo err >&2"},
            headers={"accept": "application/x-ndjson"},
        )
    lines = [json.loads(line) for line in response.text.splitlines() if line]
    assert [line["type"] for line in lines][-1] == "result"
    for line in lines:
        matching = [m for m, a in adapters.items() if _valid(a, line)]
        assert matching, line
    assert {line["type"] for line in lines} >= {"stdout", "stderr", "result"}


def _valid(adapter: TypeAdapter[Any], value: dict[str, Any]) -> bool:
    try:
        adapter.validate_python(value)
    except ValueError:
        return False
    return True


async def test_the_docs_pages_load_nothing_from_elsewhere(api: Api) -> None:
    async with api.client(None) as anon:
        for page in ("/docs", "/redoc"):
            html = (await anon.get(page)).text
            assert "cdn" not in html.lower()
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?['"]([^'"]+)['"]""", html)
            assets = [a or b for a, b in urls]
            assert assets, html
            for asset in assets:
                assert asset.startswith("/"), (page, asset)  # this server, no other host
                fetched = await anon.get(asset)
                assert fetched.status_code == 200, (page, asset)
                assert fetched.content
