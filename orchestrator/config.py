"""Configuration: pydantic models loaded from TOML, overridden by ``SBX_*``.

Precedence, highest first: values passed in code, ``SBX_*`` environment
variables (nested keys joined by ``__``, e.g. ``SBX_SANDBOX__MEMORY=2g``), the
TOML file (``--config``, else ``SBX_CONFIG``, else ``./sbx.toml`` when it
exists), then the defaults below.  Every model forbids unknown keys, so a typo
is an error naming the key rather than a silently ignored setting.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from orchestrator.errors import ConfigError

__all__ = [
    "ApiConfig",
    "ApiToken",
    "ByteSize",
    "CodeExecutionConfig",
    "Config",
    "DesktopConfig",
    "EditorConfig",
    "EngineConfig",
    "ImagesConfig",
    "LoggingConfig",
    "MemoryConfig",
    "PoolConfig",
    "SandboxConfig",
    "SessionConfig",
    "ToolsConfig",
    "load_config",
    "parse_bytes",
]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: Any) -> int:
    """``"512m"``, ``"1g"``, ``"64KiB"`` or an integer number of bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string such as '512m' or '1g'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match and match.group(2).lower() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    raise ValueError(
        f"{value!r} is not a size; use a number of bytes or a string such as '512m', '1g', '64KiB'"
    )


ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
"""An integer number of bytes that also accepts ``"512m"``-style strings."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EngineConfig(_Section):
    """How to reach the container engine."""

    backend: str = Field(
        default="docker",
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="Which backend runs sandboxes (`docker`; others register themselves).",
    )
    docker_host: str | None = Field(
        default=None, description="Engine URL; DOCKER_HOST (then the local socket) when unset."
    )
    call_timeout: float = Field(default=120.0, gt=0, description="Deadline of one engine call, s.")
    max_concurrent_calls: int = Field(default=16, ge=1, le=256)


class ImagesConfig(_Section):
    """How sandbox images are named and built."""

    prefix: str = Field(default="sbx-", description="Short name `x` means image `<prefix>x`.")
    suite: str | None = Field(
        default=None, description="Debian suite for mmdebstrap; the host's codename when unset."
    )
    sources: list[str] | None = Field(
        default=None,
        description="apt source lines for mmdebstrap; the host's Debian sources when unset.",
    )
    base_image: str | None = Field(
        default=None,
        description="Start sbx-base from this Debian-like image instead of mmdebstrap.",
    )
    build_timeout: float = Field(default=3600.0, gt=0)
    cache_dir: Path | None = Field(
        default=None, description="Scratch space for builds; a temp dir under it per build."
    )


class SandboxConfig(_Section):
    """Defaults for every sandbox; a session may override the allow-listed ones."""

    image: str = "code-runner"
    memory: ByteSize = Field(default=1 << 30, ge=16 << 20)
    cpus: float = Field(default=1.0, gt=0, le=256)
    pids_limit: int = Field(default=512, ge=16)
    network: bool = False
    user: str = "1000:1000"
    workdir: str = "/workspace"
    env: dict[str, str] = Field(default_factory=dict)
    tmpfs: dict[str, ByteSize] = Field(
        default_factory=lambda: {
            "/tmp": 512 << 20,
            "/workspace": 1 << 30,
            "/home/sandbox": 256 << 20,
            "/run": 16 << 20,
        }
    )
    allowed_roots: list[str] = Field(
        default_factory=lambda: ["/workspace", "/tmp", "/home/sandbox"],
        description="File operations are confined to these directories.",
    )
    runtime: str | None = Field(default=None, description="OCI runtime, e.g. 'runsc' (gVisor).")
    log_driver: Literal["none", "json-file", "local"] = Field(
        default="none",
        description="The engine's log of the sandbox's output. Its stdout is the guest channel, "
        "so a log copies every byte read or run through it to the host's disk and costs "
        "throughput (json-file: 25-29 MB/s against 110-220 MB/s with none, measured here).",
    )
    log_max_size: ByteSize = Field(default=1 << 20, description="The log's cap, if any.")
    start_timeout: float = Field(default=60.0, gt=0)

    @field_validator("tmpfs")
    @classmethod
    def _absolute_tmpfs(cls, value: dict[str, int]) -> dict[str, int]:
        for path in value:
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(
                    f"tmpfs mount point {path!r} must be an absolute path without '..'"
                )
        return value

    @field_validator("allowed_roots")
    @classmethod
    def _absolute_roots(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"allowed root {path!r} must be an absolute path")
        return value


class SessionConfig(_Section):
    """Lifetimes and limits of sessions and their calls."""

    ttl: float = Field(default=3600.0, gt=0, description="A session's maximum life, s.")
    idle_timeout: float = Field(default=900.0, gt=0, description="Closed after this idle time, s.")
    max_sessions: int = Field(default=256, ge=1)
    exec_timeout: float = Field(default=600.0, gt=0, description="Default exec timeout, s.")
    output_limit: ByteSize = Field(
        default=16 << 20, ge=1, description="Bytes kept per stream of one exec."
    )
    file_size_limit: ByteSize = Field(default=32 << 20, ge=1, le=64 << 20)
    kill_grace: float = Field(default=2.0, ge=0, description="TERM-to-KILL grace, s.")
    call_timeout: float = Field(default=60.0, gt=0, description="Deadline of a file/shell op, s.")


class PoolConfig(_Section):
    """Spare sandboxes kept started, so a session opens without waiting for one.

    A spare is made with the pool's template (the image, every other option at
    its default, the memory store per ``memories``) and handed to the first
    session whose options come to the same sandbox; its TTL and idle clocks
    start then.
    """

    size: int = Field(default=0, ge=0, le=64, description="Spares kept per image (0: no pool).")
    images: list[str] = Field(
        default_factory=lambda: ["code-runner"], description="Images to keep spares of."
    )
    memories: bool = Field(
        default=False,
        description="Spares mount the memory store's default namespace, as local sessions with "
        "default options do; API token owners' sessions (their own namespaces) never adopt them.",
    )
    max_age: float = Field(
        default=900.0, gt=0, description="A spare unused this long is replaced by a fresh one, s."
    )
    retry_after: float = Field(
        default=30.0, gt=0, description="After a spare failed to start, wait this long, s."
    )


class ToolsConfig(_Section):
    """Claude's tools and the router that runs batches of their calls."""

    bash_timeout: float = Field(
        default=120.0, gt=0, description="A bash tool call's timeout, s; then restart."
    )
    max_output_chars: int = Field(
        default=30_000, ge=1000, description="Text a tool result may carry before clipping."
    )
    call_timeout: float = Field(
        default=600.0, gt=0, description="The router's deadline for any one tool call, s."
    )
    max_concurrent_calls: int = Field(default=64, ge=1, description="Across all sessions.")
    max_concurrent_calls_per_session: int = Field(default=8, ge=1)


class DesktopConfig(_Section):
    """Desktop sandboxes and the ``computer`` tool."""

    width: int = Field(default=1024, ge=320, le=7680, description="Screen width, pixels.")
    height: int = Field(default=768, ge=200, le=4320, description="Screen height, pixels.")
    depth: Literal[16, 24] = 24
    display: int = Field(default=1, ge=0, le=99, description="X display number in the sandbox.")
    window_manager: Literal["fluxbox", "none"] = "fluxbox"
    background: str = Field(default="#2b4c6f", pattern=r"^#[0-9a-fA-F]{6}$")
    start_timeout: float = Field(default=30.0, gt=0, description="X server start deadline, s.")
    scaling: bool = Field(
        default=True, description="Show Claude a large screen at XGA/WXGA/FWXGA size."
    )
    resample: Literal["bilinear", "lanczos"] = Field(
        default="bilinear", description="Filter for scaled screenshots (lanczos: sharper, slower)."
    )
    enable_zoom: bool = Field(
        default=True, description="Offer the zoom action (computer_20251124)."
    )
    zoom_upscale: bool = Field(
        default=True,
        description="Enlarge a zoomed region by whole pixels to fill the screenshot size.",
    )
    settle_quiet_ms: int = Field(
        default=60,
        ge=0,
        le=10_000,
        description="After an action, wait until the screen is unchanged this long, ms.",
    )
    settle_timeout_ms: int = Field(
        default=2000, ge=0, le=60_000, description="...but never longer than this, ms."
    )
    typing_delay_ms: float = Field(default=4.0, ge=0, le=1000, description="Between keys, ms.")
    click_interval_ms: float = Field(
        default=60.0, ge=0, le=1000, description="Between the clicks of a double click, ms."
    )
    vnc_port: int = Field(
        default=5900,
        ge=1024,
        le=65000,
        description="Live view VNC port in the sandbox (+1 for the interactive one).",
    )
    view_host: str = Field(default="127.0.0.1", description="The live view server's address.")
    view_port: int = Field(default=0, ge=0, le=65535, description="Its port; 0 picks a free one.")
    view_public_url: str | None = Field(
        default=None,
        description="Base URL browsers use to reach the live view (behind a proxy or the API).",
    )


class EditorConfig(_Section):
    """The text editor tools (``str_replace_based_edit_tool``, ``str_replace_editor``)."""

    undo_depth: int = Field(default=10, ge=0, description="Edits ``undo_edit`` can take back.")
    undo_max_bytes: ByteSize = Field(
        default=64 << 20,
        ge=0,
        description="Undo snapshots kept per session (in the sandbox's memory); oldest go first.",
    )
    max_file_bytes: ByteSize = Field(
        default=16 << 20, ge=1, le=64 << 20, description="Largest file the editor reads or writes."
    )
    max_characters: int | None = Field(
        default=None,
        ge=1000,
        description="Cap of one `view`, advertised to text_editor_20250728; unset: "
        "tools.max_output_chars.",
    )


class CodeExecutionConfig(_Section):
    """The ``code_execution`` tool and ``sbx exec-code``."""

    timeout: float = Field(default=60.0, gt=0, description="Per-call timeout, s.")
    tool_name: str = Field(
        default="code_execution",
        pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="The name the tool is advertised under (calls named code_execution still "
        "work); change it if an API refuses a custom tool named like its server tool.",
    )
    outputs_dir: str = Field(
        default="/workspace/outputs",
        pattern=r"^/",
        description="Files written here during a call are listed in its result.",
    )
    max_figures: int = Field(default=20, ge=0, le=200, description="Figures returned per call.")


class MemoryConfig(_Section):
    """The ``memory`` tool's store, on the host, mounted into sessions at /memories."""

    enabled: bool = Field(
        default=True,
        description="Mount the store into sessions (a session may opt out with memories=False).",
    )
    namespace: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    max_bytes: ByteSize = Field(default=64 << 20, ge=1, description="Size cap of one namespace.")
    root: Path | None = Field(
        default=None,
        description="Directory holding a directory per namespace; unset: "
        "$XDG_DATA_HOME/sbx/memories (~/.local/share/sbx/memories).",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_name(cls, value: str) -> str:
        if set(value) <= {"."}:
            raise ValueError("a memory namespace cannot be '.' or '..'; use a plain name")
        return value


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


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Section):
    """Everything the orchestrator can be told; see ``sbx.example.toml``.

    ``Config()`` is the built-in defaults alone; ``load_config()`` layers the
    TOML file and the environment on top.
    """

    engine: EngineConfig = Field(default_factory=EngineConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    session: SessionConfig = Field(default_factory=SessionConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    desktop: DesktopConfig = Field(default_factory=DesktopConfig)
    editor: EditorConfig = Field(default_factory=EditorConfig)
    code_execution: CodeExecutionConfig = Field(default_factory=CodeExecutionConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    owner: str = Field(
        default="local",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Label put on every sandbox this supervisor starts.",
    )
    reap_orphans: bool = Field(
        default=True, description="At start-up, remove sandboxes left by a dead supervisor."
    )
    shutdown_timeout: float = Field(default=15.0, gt=0)

    def image_name(self, name: str) -> str:
        """The engine's name of an image given by its short or full name."""
        from orchestrator.images.recipes import resolve_image_name

        return resolve_image_name(name, prefix=self.images.prefix)


def _config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("SBX_CONFIG")
    if from_env:
        return Path(from_env)
    default = Path("sbx.toml")
    return default if default.is_file() else None


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        value = err.get("input")
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against sbx.example.toml"
            lines.append(f"  {key}: {message}")
            continue
        lines.append(f"  {key} = {value!r}: {message}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """Build a ``Config`` from the TOML file, ``SBX_*`` and ``overrides``.

    Raises ``ConfigError`` naming each bad key, its value and what is allowed.
    """
    file_path = _config_path(path)
    data: dict[str, Any] = {}
    source = "defaults and SBX_* environment variables"
    if file_path is not None:
        source = f"{file_path} and SBX_* environment variables"
        try:
            data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"config file {file_path} does not exist; create it (see sbx.example.toml) "
                "or unset SBX_CONFIG / drop --config"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file_path} is not valid TOML: {exc}") from None
    env_values = _env_layer()
    merged = _deep_merge(_deep_merge(data, env_values), overrides)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


NOT_CONFIG_VARIABLES = frozenset(
    {
        "SBX_CONFIG",  # where the file is
        "SBX_URL",  # the CLI client's server
        "SBX_TOKEN",  # the client's token, or the single-user server token
        "SBX_TOKEN_OWNER",  # that token's owner
        "SBX_DATA",  # compose: the host directory for the memory store and runs
        "SBX_PUBLISH",  # compose: where the server is published
        "SBX_POOL_SIZE",  # compose: spares kept by the server
    }
)
"""``SBX_*`` variables that are not configuration keys; every other one must be."""


def _env_layer() -> dict[str, Any]:
    """``SBX_*`` variables as a nested dict (``SBX_A__B=1`` → ``{"a": {"b": "1"}}``).

    Done by hand rather than by pydantic-settings' env source so that the file
    and the environment merge key by key instead of section by section.
    """
    ignored = NOT_CONFIG_VARIABLES
    layer: dict[str, Any] = {}
    for name, value in os.environ.items():
        if not name.startswith("SBX_") or name in ignored:
            continue
        parts = [part.lower() for part in name[4:].split("__") if part]
        if not parts:
            continue
        node = layer
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = _env_value(value)
    return layer


def _env_value(raw: str) -> Any:
    """Lists and tables may be given as TOML inline values (or JSON) in the environment."""
    text = raw.strip()
    if text[:1] in "[{":
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            import json

            try:
                return json.loads(text)
            except ValueError:
                return raw
    return raw


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
