"""The configuration's sections: one pydantic model per ``[table]`` of ``sbx.toml``.

Every model forbids unknown keys, so a typo is an error naming the key
rather than a silently ignored setting.

Must not: read files or the environment (``loading`` does), or import
anything of the orchestrator above the configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.config.sizes import ByteSize

__all__ = [
    "CodeExecutionConfig",
    "DesktopConfig",
    "EditorConfig",
    "EngineConfig",
    "ImagesConfig",
    "LoggingConfig",
    "MemoryConfig",
    "PoolConfig",
    "SessionConfig",
    "ToolsConfig",
]


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


class SessionConfig(_Section):
    """Lifetimes and limits of sessions and their calls."""

    ttl: float = Field(default=3600.0, gt=0, description="A session's maximum life, s.")
    idle_timeout: float = Field(default=900.0, gt=0, description="Closed after this idle time, s.")
    max_sessions: int = Field(default=256, ge=1)
    exec_timeout: float = Field(default=600.0, gt=0, description="Default exec timeout, s.")
    output_limit: ByteSize = Field(
        default=16 << 20, ge=1, description="Bytes kept per stream of one exec."
    )
    file_size_limit: ByteSize = Field(
        default=32 << 20,
        ge=1,
        le=1 << 40,
        description="Largest file read or written by one call (streamed past 8 MiB).",
    )
    dir_transfer_limit: ByteSize = Field(
        default=4 << 30,
        ge=1,
        le=1 << 40,
        description="Bytes of file data one folder copy (put_dir/get_dir) may move.",
    )
    max_command_bytes: ByteSize = Field(
        default=2 << 20,
        ge=4 << 10,
        description="A command's text, argv, environment and working directory together (the "
        "kernel's own limit for starting a program is about 2 MiB; one argument ~128 KiB).",
    )
    max_stdin: ByteSize = Field(
        default=1 << 30,
        ge=0,
        description="stdin handed to one command (streamed in chunks past the first MiB).",
    )
    kill_grace: float = Field(default=2.0, ge=0, description="TERM-to-KILL grace, s.")
    call_timeout: float = Field(default=60.0, gt=0, description="Deadline of a file/shell op, s.")
    heartbeat_interval: float = Field(
        default=2.0, gt=0, description="A quiet channel is pinged this often, s."
    )
    heartbeat_timeout: float = Field(
        default=10.0,
        gt=0,
        description="A guest silent this long is broken: the session fails its calls and "
        "its sandbox is removed, s.",
    )
    max_restarts: int = Field(
        default=5,
        ge=0,
        description="Fresh sandboxes a restart_on_crash session may get in all; past it, a "
        "lost sandbox leaves the session crashed.",
    )
    snapshot_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Deadline of one snapshot (archiving the mounts, both commits), s.",
    )


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
        description="Spares have the memory store's default namespace, as local sessions with "
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
    """The ``memory`` tool's store, on the host (edited from the host; never mounted into a
    sandbox, whose code could otherwise write it past its cap)."""

    enabled: bool = Field(
        default=True,
        description="Give sessions the store (a session may opt out with memories=False).",
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


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
