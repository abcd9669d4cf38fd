"""The sections of ``sbx serve``: ``[api]`` (the HTTP server and its tokens).

Must not: read files or the environment (``loading`` does), or import
anything of the orchestrator above the configuration.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orchestrator.config.sections import _Section
from orchestrator.config.sizes import ByteSize

__all__ = ["ApiConfig", "ApiToken"]


class ApiToken(_Section):
    """One API token: stored as its SHA-256 (``sbx token hash`` prints it), with an owner."""

    owner: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the token, hex.")
    admin: bool = Field(default=False, description="Sees and manages every owner's sessions.")


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
