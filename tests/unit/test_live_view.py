"""The live view's routes: nothing without a valid token for that very session.

The bridge to a real VNC server and the page in a real browser are tested
against real desktops in tests/integration/test_desktop.py.
"""

from __future__ import annotations

import httpx
import pytest

from orchestrator import Orchestrator
from orchestrator.errors import SessionError


def _client(orch: Orchestrator) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=orch.view.app())
    return httpx.AsyncClient(transport=transport, base_url="http://view.test")


async def test_a_token_opens_the_page_of_its_session_only(orch: Orchestrator) -> None:
    async with orch.session() as first, orch.session() as second, _client(orch) as client:
        token = orch.view.grant(first)
        page = await client.get(f"/desktop/{first.id}/{token}/")
        assert page.status_code == 200
        assert f"session {first.id}" in page.text
        assert "rfb.viewOnly = true;" in page.text
        assert page.headers["cache-control"] == "no-store"
        other = await client.get(f"/desktop/{second.id}/{token}/")
        assert other.status_code == 403
        assert "not valid" in other.json()["detail"]
        forged = await client.get(f"/desktop/{first.id}/{token[:-2]}xx/")
        assert forged.status_code == 403


async def test_interactive_views_are_granted_explicitly(orch: Orchestrator) -> None:
    async with orch.session() as session, _client(orch) as client:
        token = orch.view.grant(session, interactive=True)
        page = await client.get(f"/desktop/{session.id}/{token}/")
        assert "rfb.viewOnly = false;" in page.text
        assert "interactive" in page.text


async def test_the_page_url_without_a_slash_redirects(orch: Orchestrator) -> None:
    async with orch.session() as session, _client(orch) as client:
        token = orch.view.grant(session)
        moved = await client.get(f"/desktop/{session.id}/{token}")
        assert moved.status_code == 307
        assert moved.headers["location"] == f"{token}/"


async def test_a_closed_session_ends_its_view(orch: Orchestrator) -> None:
    async with _client(orch) as client:
        session = await orch.open_session()
        token = orch.view.grant(session)
        await session.close()
        gone = await client.get(f"/desktop/{session.id}/{token}/")
        assert gone.status_code in (403, 404)
        # The next grant prunes tokens of sessions that are gone.
        async with orch.session() as other:
            orch.view.grant(other)
        assert all(g.session_id != session.id for g in orch.view._grants.values())


async def test_a_session_without_a_desktop_has_no_view(orch: Orchestrator) -> None:
    async with orch.session() as session, _client(orch) as client:
        with pytest.raises(SessionError, match="has no desktop"):
            await session.view_url()
        token = orch.view.grant(session)
        files = await client.get(f"/desktop/{session.id}/{token}/novnc/core/rfb.js")
        assert files.status_code == 503
        assert "noVNC" in files.json()["detail"]


async def test_desktop_options_are_checked_before_and_at_start(orch: Orchestrator) -> None:
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        await orch.open_session(screen="huge")
    with pytest.raises(ConfigError, match="out of range"):
        await orch.open_session(screen="100x100")
    # The fake backend's guest has no X server: asking for a desktop says which image has one.
    with pytest.raises(ConfigError, match="image='desktop'"):
        await orch.open_session(desktop=True)
    with pytest.raises(ConfigError, match="screen='1920x1080'"):
        await orch.open_session(screen="1920x1080")
    assert orch.sessions == []
