"""Bearer-token authentication: who is calling, and may they touch this session.

Tokens are configured as SHA-256 digests with an owner (``[api].tokens``), so
the configuration file holds nothing that grants access; ``SBX_TOKEN`` adds
one token for a single-user setup.  A token sees and touches only its
owner's sessions; an admin token sees all.  Anonymous access exists only
when explicitly enabled *and* the server is bound to a loopback address;
``/metrics`` takes ``api.metrics_token`` or an admin token (open on a
loopback bind when no metrics token is set).  It must not keep or log a
token, only its digest.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass

from fastapi import Request
from pydantic import SecretStr

from orchestrator.api.errors import ApiError
from orchestrator.config import ApiConfig
from orchestrator.errors import ConfigError

__all__ = ["Authenticator", "Principal", "hash_token", "is_loopback"]

ANONYMOUS_OWNER = "anonymous"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(bind: str) -> bool:
    host = bind.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _digest_of(secret: SecretStr | None) -> str | None:
    """The SHA-256 of a configured token, given as the token or as ``sha256:<hex>``."""
    if secret is None:
        return None
    value = secret.get_secret_value()
    return value.removeprefix("sha256:") if value.startswith("sha256:") else hash_token(value)


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool = False
    api_key_env: str | None = None
    """The server's environment variable holding this owner's own Messages API key."""

    def may_use(self, session_owner: str | None) -> bool:
        return self.admin or session_owner == self.owner


class Authenticator:
    def __init__(self, config: ApiConfig, bind: str, env_token: str | None = None) -> None:
        self._tokens: list[tuple[str, Principal]] = [
            (entry.sha256, Principal(entry.owner, entry.admin, entry.anthropic_api_key_env))
            for entry in config.tokens
        ]
        env_token = env_token if env_token is not None else os.environ.get("SBX_TOKEN")
        if env_token:
            owner = os.environ.get("SBX_TOKEN_OWNER", "local")
            self._tokens.append((hash_token(env_token), Principal(owner, admin=True)))
        self._metrics_digest = _digest_of(config.metrics_token)
        self.metrics_open = self._metrics_digest is None and is_loopback(bind)
        """``/metrics`` takes no token: none is configured, and only this host can connect."""
        self.anonymous = config.allow_anonymous and not self._tokens
        if config.allow_anonymous and not is_loopback(bind):
            raise ConfigError(
                f"api.allow_anonymous needs a loopback bind address, not {bind}: anyone who can "
                "reach the port would control sandboxes. Bind to 127.0.0.1 or configure tokens"
            )
        if not self._tokens and not self.anonymous:
            raise ConfigError(
                "no API tokens configured: set SBX_TOKEN, add [[api.tokens]] entries (owner and "
                "sha256 of the token, see `sbx token hash`), or set api.allow_anonymous = true "
                "on a loopback bind"
            )

    def lookup(self, header: str) -> Principal | None:
        """The principal of an ``Authorization`` header, or ``None`` (never raises)."""
        try:
            return self._authenticate(header)
        except ApiError:
            return None

    def authorize_metrics(self, header: str) -> None:
        """Let a scrape of ``/metrics`` through, or raise a 401.

        With ``api.metrics_token`` set, that token or an admin token is needed.
        Unset, ``/metrics`` is open on a loopback bind -- only this host's
        processes can connect, as in anonymous mode, and a local scraper needs
        no secret -- and needs an admin token on any other bind: its counters
        (sessions, images started, tool calls, failures) describe every
        owner's activity, which no other owner may read.
        """
        if self.metrics_open:
            return
        scheme, _, token = header.partition(" ")
        if token and scheme.lower() == "bearer":
            digest = hash_token(token.strip())
            if self._metrics_digest is not None and hmac.compare_digest(
                self._metrics_digest, digest
            ):
                return
            principal = self.lookup(header)
            if principal is not None and principal.admin:
                return
        raise ApiError(
            401,
            "unauthorized",
            "/metrics needs a bearer token here: api.metrics_token (for Prometheus, its "
            "authorization credentials) or an admin token",
        )

    def authenticate(self, request: Request) -> Principal:
        return self._authenticate(request.headers.get("authorization", ""))

    def _authenticate(self, header: str) -> Principal:
        scheme, _, token = header.partition(" ")
        if not token or scheme.lower() != "bearer":
            if self.anonymous:
                return Principal(ANONYMOUS_OWNER, admin=True)
            raise ApiError(
                401,
                "unauthorized",
                "missing bearer token: send `Authorization: Bearer <token>` (the CLI reads "
                "SBX_TOKEN)",
            )
        digest = hash_token(token.strip())
        found: Principal | None = None
        for expected, principal in self._tokens:
            if hmac.compare_digest(expected, digest):
                found = principal
        if found is None:
            raise ApiError(401, "unauthorized", "invalid bearer token; check SBX_TOKEN")
        return found
