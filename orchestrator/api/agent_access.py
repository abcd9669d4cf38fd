"""Where an agent run started over HTTP may send a Messages API key, and whose key it sends.

A tenant chooses a run's task, never the server's secrets or its network:

- a per-run ``base_url`` is an admin token's privilege, or one of
  ``agent.allowed_base_urls`` (compared whole and normalised, so
  ``https://api.anthropic.com.evil.com`` is not ``https://api.anthropic.com``);
  the run then talks to the operator's spelling of that entry;
- the key is the owner's own (the variable its token entry names in
  ``anthropic_api_key_env``), else the server's ``ANTHROPIC_API_KEY`` where
  ``agent.share_server_key`` allows it (admin tokens always).

Both are decided before a run starts: a refused run is a 403 and sends
nothing anywhere.  The client never follows redirects, so an allowed address
cannot pass the key on to another one.  It must not log, describe or keep a
key beyond the run that uses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from orchestrator.api.errors import ApiError

if TYPE_CHECKING:
    import anthropic

    from orchestrator.api.auth import Principal
    from orchestrator.config import AgentConfig

__all__ = ["MessagesTarget", "messages_target"]


@dataclass(frozen=True)
class MessagesTarget:
    """The Messages API a run calls and the key it sends there (never in its ``repr``)."""

    base_url: str | None
    """``None``: ``ANTHROPIC_BASE_URL``, else the SDK's default (the cloud API)."""
    key_owner: Literal["owner", "server"]
    api_key: str | None = field(default=None, repr=False)
    """The owner's own key; ``None`` for the server's ``ANTHROPIC_API_KEY``."""
    max_retries: int = 2
    """The SDK's retries (``agent.max_retries``)."""

    def client(self) -> anthropic.AsyncAnthropic:
        """A client for this target: the key given explicitly (so the SDK consults no other
        credential of the server's), redirects not followed."""
        import anthropic

        from orchestrator.agent.loop import resolve_api_key

        return anthropic.AsyncAnthropic(
            api_key=self.api_key if self.api_key is not None else resolve_api_key(None),
            base_url=self.base_url,
            http_client=anthropic.DefaultAsyncHttpxClient(follow_redirects=False),
            max_retries=self.max_retries,
        )


def messages_target(
    config: AgentConfig,
    who: Principal,
    base_url: str | None,
    environ: Mapping[str, str] = os.environ,
) -> MessagesTarget:
    """Where ``who``'s run may go and with which key; ``ApiError`` 403 naming the setting."""
    if base_url is not None and not who.admin:
        allowed = config.allowed_base_url(base_url)
        if allowed is None:
            raise ApiError(
                403,
                "base_url_not_allowed",
                f"base_url {base_url[:200]!r} is not in agent.allowed_base_urls, the Messages "
                "API addresses this server lets tokens choose; leave base_url out to use the "
                "server's, or ask the operator to add it to agent.allowed_base_urls",
                "base_url",
            )
        base_url = allowed
    own = environ.get(who.api_key_env) if who.api_key_env else None
    if own:
        return MessagesTarget(base_url, "owner", own, config.max_retries)
    if who.admin or config.shares_server_key_with(who.owner):
        return MessagesTarget(base_url, "server", max_retries=config.max_retries)
    unset = (
        f"its token names {who.api_key_env}, which is not set in the server's environment"
        if who.api_key_env
        else "its token names none (anthropic_api_key_env in [[api.tokens]])"
    )
    raise ApiError(
        403,
        "api_key_not_allowed",
        f"owner {who.owner!r} has no Messages API key on this server: {unset}, and "
        "agent.share_server_key does not include it; ask the operator to set the owner's "
        "anthropic_api_key_env or to add the owner to agent.share_server_key",
    )
