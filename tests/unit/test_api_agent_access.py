"""Agent runs over the API: the server's key, and any request, go only where the operator allows.

The address a tenant names is a real socket server here, which records every
connection it is given: "refused" means it saw no request at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from orchestrator import Config
from orchestrator.config import AgentConfig, ApiToken, normalize_base_url
from orchestrator.testing.messages_api import MessagesAPIServer, Reply
from tests.api_harness import ADMIN, ALICE, BOB, Api

SERVER_KEY = "sk-server-own-key-0000"
SERVER_AUTH_TOKEN = "server-auth-token-0000"
ALICE_KEY = "sk-alice-own-key-1111"


def http_answer(status: str, headers: str = "", body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\n{headers}content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


UNAUTHORIZED = http_answer(
    "401 Unauthorized",
    "content-type: application/json\r\n",
    b'{"type":"error","error":{"type":"authentication_error","message":"no"}}',
)


@dataclass
class Listener:
    """A TCP server on 127.0.0.1 that records what it is sent and answers ``reply``."""

    reply: bytes = UNAUTHORIZED
    url: str = ""
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        task_status.started(self.url)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in self.received:
                data = await stream.receive_some(65536)
                if not data:
                    break
                self.received += data
            await stream.send_all(self.reply)
        await stream.aclose()


@pytest.fixture
def api_config(api_config: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    """alice's token names her own key; the server has a key and a bearer token of its own."""
    alice: ApiToken = api_config.api.tokens[0]
    alice.anthropic_api_key_env = "ALICE_ANTHROPIC_KEY"
    monkeypatch.setenv("ALICE_ANTHROPIC_KEY", ALICE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SERVER_KEY)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", SERVER_AUTH_TOKEN)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    api_config.agent.allowed_base_urls = ["https://api.anthropic.com"]
    return api_config


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    trap = Listener()
    async with trio.open_nursery() as nursery:
        await nursery.start(trap.serve)
        yield trap
        nursery.cancel_scope.cancel()


async def finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            info: dict[str, Any] = (await client.get(f"/v1/agent-runs/{run_id}")).json()
            if info["status"] != "running":
                return info
            await trio.sleep(0.05)


async def test_a_tenant_cannot_make_the_server_call_an_address_that_is_not_allowed(
    api: Api, listener: Listener
) -> None:
    host_port = listener.url.removeprefix("http://")
    refused_urls = [
        listener.url,
        listener.url + "/v1",
        "https://api.anthropic.com.evil.com",
        f"https://api.anthropic.com@{host_port}",
        f"http://api.anthropic.com:443@{host_port}",
        "https://api.anthropic.com/?x=1",
        "http://api.anthropic.com",  # another scheme is another address
        "not a url",
    ]
    async with api.client(ALICE) as alice:
        for url in refused_urls:
            response = await alice.post("/v1/agent-runs", json={"task": "hi", "base_url": url})
            assert response.status_code == 403, (url, response.text)
            error = response.json()["error"]
            assert error["type"] == "base_url_not_allowed"
            assert error["field"] == "base_url"
            assert "agent.allowed_base_urls" in error["message"]
            assert "leave base_url out" in error["message"]
        await trio.sleep(0.5)  # anything sent would have arrived by now
        assert (await alice.get("/v1/agent-runs")).json() == []
    assert listener.connections == 0
    assert bytes(listener.received) == b""


async def test_an_admin_may_name_any_address(api: Api, listener: Listener) -> None:
    """The trap above is a working listener: an admin's run does reach it."""
    async with api.client(ADMIN) as admin:
        started = await admin.post("/v1/agent-runs", json={"task": "hi", "base_url": listener.url})
        assert started.status_code == 202, started.text
        info = await finished(admin, started.json()["id"])
    assert info["status"] == "failed"
    assert listener.connections >= 1
    assert b"POST /v1/messages" in listener.received


async def test_an_allowed_address_gets_the_owners_own_key_never_the_servers(api: Api) -> None:
    claude = MessagesAPIServer([Reply(text="Done.")] * 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(claude.serve)
        # Another spelling of the same address: compared normalised.
        api.config.agent.allowed_base_urls = [claude.url.replace("http://", "HTTP://") + "/"]
        async with api.client(ALICE) as alice, api.client(BOB) as bob:
            started = await alice.post(
                "/v1/agent-runs", json={"task": "hi", "base_url": claude.url}
            )
            assert started.status_code == 202, started.text
            assert (await finished(alice, started.json()["id"]))["final_text"] == "Done."
            # bob has no key of his own, and the server's is not shared with him.
            refused = await bob.post("/v1/agent-runs", json={"task": "hi", "base_url": claude.url})
            assert refused.status_code == 403
            assert refused.json()["error"]["type"] == "api_key_not_allowed"
            assert "anthropic_api_key_env" in refused.json()["error"]["message"]
            assert "agent.share_server_key" in refused.json()["error"]["message"]
            assert len(claude.requests) == 1
            # Shared with bob: his run uses the server's key.
            api.config.agent.share_server_key = ["bob"]
            shared = await bob.post("/v1/agent-runs", json={"task": "hi", "base_url": claude.url})
            assert shared.status_code == 202, shared.text
            await finished(bob, shared.json()["id"])
        nursery.cancel_scope.cancel()
    alices, bobs = claude.requests
    assert alices.api_key == ALICE_KEY
    sent = " ".join(f"{k}: {v}" for k, v in alices.headers.items())
    assert SERVER_KEY not in sent
    assert SERVER_AUTH_TOKEN not in sent
    assert bobs.api_key == SERVER_KEY


async def test_an_allowed_address_that_redirects_does_not_pass_the_key_on(
    api: Api, listener: Listener
) -> None:
    redirector = Listener(
        reply=http_answer("307 Temporary Redirect", f"location: {listener.url}/v1/messages\r\n")
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(redirector.serve)
        api.config.agent.allowed_base_urls = [redirector.url]
        async with api.client(ALICE) as alice:
            started = await alice.post(
                "/v1/agent-runs", json={"task": "hi", "base_url": redirector.url}
            )
            assert started.status_code == 202, started.text
            info = await finished(alice, started.json()["id"])
        nursery.cancel_scope.cancel()
    assert info["status"] == "failed"
    assert redirector.connections >= 1
    assert ALICE_KEY.encode() in redirector.received
    assert listener.connections == 0


async def test_without_a_base_url_a_tenant_still_needs_a_key_it_may_use(
    api: Api, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", listener.url)  # the server's own choice
    async with api.client(BOB) as bob:
        refused = await bob.post("/v1/agent-runs", json={"task": "hi"})
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "api_key_not_allowed"
    await trio.sleep(0.3)
    assert listener.connections == 0


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com"),
        ("HTTPS://API.Anthropic.com:443/", "https://api.anthropic.com"),
        ("https://api.anthropic.com/v1/", "https://api.anthropic.com/v1"),
        ("http://[::1]:80/", "http://[::1]"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://api.anthropic.com.evil.com", "https://api.anthropic.com.evil.com"),
        ("https://api.anthropic.com@evil.com", None),
        ("https://user:pw@api.anthropic.com", None),
        ("https://api.anthropic.com\\@evil.com", None),
        ("https://api.anthropic.com?x", None),
        ("https://api.anthropic.com#x", None),
        ("https://api.anthropic.com/ ", None),
        ("ftp://api.anthropic.com", None),
        ("api.anthropic.com", None),
        ("http://h:99999", None),
    ],
)
def test_base_urls_are_compared_whole_and_normalised(url: str, normal: str | None) -> None:
    assert normalize_base_url(url) == normal
    allowed = AgentConfig(allowed_base_urls=["https://api.anthropic.com"])
    expected = "https://api.anthropic.com" if normal == "https://api.anthropic.com" else None
    assert allowed.allowed_base_url(url) == expected


def test_the_agent_settings_refuse_what_would_leak() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a plain"):
        AgentConfig(allowed_base_urls=["https://api.anthropic.com@evil.com"])
    with pytest.raises(ValidationError, match="server's own key"):
        ApiToken(owner="a", sha256="0" * 64, anthropic_api_key_env="ANTHROPIC_API_KEY")
    assert not AgentConfig().shares_server_key_with("alice")  # default: admin tokens only
    assert AgentConfig(share_server_key=True).shares_server_key_with("alice")
    assert AgentConfig(share_server_key=["alice"]).shares_server_key_with("alice")
    assert not AgentConfig(share_server_key=["alice"]).shares_server_key_with("bob")
