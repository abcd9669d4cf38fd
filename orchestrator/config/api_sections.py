"""The section of ``sbx serve``: ``[api]`` (the HTTP server and its tokens).

``[agent]`` (in ``config.agent``) says, besides the agent loop's context,
where agent runs started over the API may send a Messages API key.

Must not: read files or the environment (``loading`` does; the API reads the
key variable a token names when a run starts), or import anything of the
orchestrator above the configuration.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from orchestrator.config.sections import _Section
from orchestrator.config.sizes import ByteSize

__all__ = ["OWNER_PATTERN", "ApiConfig", "ApiToken", "normalize_base_url"]

OWNER_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
_SERVER_KEYS = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_base_url(url: str) -> str | None:
    """``url`` in one canonical spelling, for comparing whole URLs; ``None`` if it is not a
    plain ``http(s)://host[:port][/path]`` URL.

    The scheme and host are lowercased, a default port and trailing slashes
    dropped; anything that could make two parsers disagree about the host
    (user info, a query, a fragment, whitespace, backslashes) makes it no URL
    at all.  ``https://api.anthropic.com.evil.com`` and
    ``https://api.anthropic.com@evil.com`` never equal ``https://api.anthropic.com``.
    """
    if not url or any(ch.isspace() or ch == "\\" or not ch.isprintable() for ch in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


class ApiToken(_Section):
    """One API token: stored as its SHA-256 (``sbx token hash`` prints it), with an owner."""

    owner: str = Field(pattern=OWNER_PATTERN)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the token, hex.")
    admin: bool = Field(default=False, description="Sees and manages every owner's sessions.")
    anthropic_api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="The environment variable of the server that holds this owner's own "
        "Messages API key, used for its agent runs (before the server's own key).",
    )

    @field_validator("anthropic_api_key_env")
    @classmethod
    def _not_the_servers_key(cls, value: str | None) -> str | None:
        if value in _SERVER_KEYS:
            raise ValueError(
                f"{value} is the server's own key: to let this owner use it, list the owner "
                "in agent.share_server_key; anthropic_api_key_env names the owner's own key"
            )
        return value


class ApiConfig(_Section):
    """``sbx serve``: the HTTP API."""

    bind: str = Field(default="127.0.0.1:8765", pattern=r"^[^\s]+:\d{1,5}$")
    tokens: list[ApiToken] = Field(default_factory=list)
    allow_anonymous: bool = Field(
        default=False,
        description="Serve without tokens; refused unless bound to a loopback address.",
    )
    max_body: ByteSize = Field(default=64 << 20, ge=1024, description="Largest request body.")
    graceful_timeout: float = Field(
        default=30.0, gt=0, description="On shutdown, how long calls may finish, s."
    )
    stream_buffer: ByteSize = Field(
        default=256 << 10,
        ge=64 << 10,
        description="Output held per stream, in the server and ahead from the sandbox each.",
    )
    stall_timeout: float = Field(
        default=10.0,
        gt=0,
        description="A client that takes no output for this long loses output (with a marker).",
    )
    runs_dir: Path = Field(default=Path("runs"), description="Where agent runs are written.")
    head_timeout: float = Field(
        default=10.0,
        gt=0,
        description="A request's head must arrive whole this long after its first byte, s; "
        "else 408 and the connection closes.",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="A request body that sends nothing for this long is cut off, s (408).",
    )
    keep_alive_timeout: float = Field(
        default=15.0,
        gt=0,
        description="An idle keep-alive connection is closed after this long, s.",
    )
    config_watch_interval: float = Field(
        default=2.0,
        ge=0,
        description="How often `sbx serve` checks its config file for changes to reload, s "
        "(0: only on SIGHUP).",
    )
    max_connections: int = Field(
        default=1024,
        ge=1,
        description="Connections served at once (websockets too); one more is answered 503 "
        "at once and closed.",
    )
    mcp_idle_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="`sbx serve --mcp`: an MCP session with no request for this long ends, s "
        "(and its sandboxes are removed).",
    )
    mcp_max_sessions: int = Field(
        default=256, ge=1, description="`sbx serve --mcp`: MCP sessions open at once."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="The bearer token /metrics takes besides admin tokens, or 'sha256:<hex>' of "
        "it; unset, /metrics is open on a loopback bind and needs an admin token otherwise.",
    )

    @field_validator("metrics_token")
    @classmethod
    def _digest_is_hex(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value is not None else ""
        if secret.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", secret):
            raise ValueError("a 'sha256:' metrics_token is followed by 64 lowercase hex digits")
        if value is not None and not secret.strip():
            raise ValueError("metrics_token is empty; unset it or give a token")
        return value
