"""What a caller may ask of a sandbox: the allow-list of per-session options.

Everything outside this model (privileged mode, capabilities, volumes,
devices, the Docker socket, host networking, ...) is refused with an error
that lists what *is* allowed.  Hardening itself is not an option: backends
apply it to every sandbox (decision 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.config import MIN_MEMORY, MIN_MEMORY_TEXT, ByteSize, Config, human_bytes
from orchestrator.desktop.screen import parse_screen
from orchestrator.errors import ConfigError, OptionNotAllowed
from orchestrator.option_limits import check_image_reference, check_limits

__all__ = ["SandboxOptions", "parse_options"]


def _unicode_only(table: dict[str, str]) -> None:
    """Refuse lone surrogates (text decoded from undecodable bytes): they cannot be sent on."""
    for key, text in table.items():
        for part in (key, text):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"{key.encode('utf-8', 'backslashreplace').decode()!r} holds text that is "
                    "not valid Unicode (a lone surrogate); send UTF-8 text"
                ) from None


class SandboxOptions(BaseModel):
    """Per-session choices; unset fields take the configured defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = None
    memory: ByteSize | None = Field(default=None, json_schema_extra={"minimum": MIN_MEMORY})
    cpus: float | None = Field(default=None, gt=0, le=256)
    pids_limit: int | None = Field(default=None, ge=16, le=1 << 16)
    network: bool | None = None
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    ttl: float | None = Field(default=None, gt=0)
    idle_timeout: float | None = Field(default=None, gt=0)
    restart_on_crash: bool | None = Field(
        default=None,
        description="A lost sandbox (crashed, or its guest silent) is replaced by a fresh one "
        "and the next result says so; its state is lost (at most session.max_restarts).",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    tmpfs_sizes: dict[str, ByteSize] = Field(
        default_factory=dict, description="New sizes for the configured tmpfs mounts."
    )
    screen: str | None = Field(
        default=None,
        description="Desktop screen as WIDTHxHEIGHT[xDEPTH] (default: the desktop config).",
    )
    desktop: bool | None = Field(
        default=None,
        description="Start the desktop (default: when the image has one); True requires it.",
    )
    user: str | None = Field(
        default=None,
        pattern=r"^(root|[a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}(:[0-9]{1,10})?)$",
        description="Whom commands run as: 'root', a user name of the image, or uid[:gid] "
        "(default: the image's USER unless root, else sandbox.user).",
    )
    writable_root: bool | None = Field(
        default=None,
        description="A writable root filesystem, capped at sandbox.root_size (default: "
        "sandbox.writable_root).",
    )
    memories: bool | None = Field(
        default=None,
        description="Mount the memory store at /memories (default: memory.enabled); "
        "False for sandboxes that run untrusted code and need no memory tool.",
    )
    memory_namespace: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="The store's namespace to mount (default: memory.namespace).",
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"environment variable name {name!r} is invalid")
            if name.startswith("SBX_"):
                raise ValueError(
                    f"environment variable {name} is reserved (SBX_* variables configure sbx "
                    "itself); use another name"
                )
            if "\0" in text:
                raise ValueError(f"environment variable {name} has a NUL byte in its value")
        _unicode_only(value)
        return value

    @field_validator("workdir")
    @classmethod
    def _absolute_workdir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"workdir {value!r} must be an absolute path such as /workspace")
        return value

    @field_validator("memory")
    @classmethod
    def _enough_memory(cls, value: int | None) -> int | None:
        if value is not None and value < MIN_MEMORY:
            raise ValueError(
                f"{human_bytes(value)} is too little: a sandbox needs at least {MIN_MEMORY_TEXT} "
                "(sizes such as 512m or 1g)"
            )
        return value

    @field_validator("memory_namespace")
    @classmethod
    def _namespace_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and set(value) <= {"."}:
            raise ValueError("a memory namespace cannot be '.' or '..'; use a plain name")
        return value

    @field_validator("screen")
    @classmethod
    def _screen_size(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_screen(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("labels")
    @classmethod
    def _user_labels(cls, value: dict[str, str]) -> dict[str, str]:
        _unicode_only(value)
        for key in value:
            if key.startswith("io.sbx."):
                raise ValueError(f"label {key!r} is reserved (io.sbx.* labels are set by sbx)")
        return value


def _shown(value: Any, limit: int = 120) -> str:
    """A value for an error message, cut short: a message never echoes a huge input back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_options(options: Mapping[str, Any], config: Config) -> SandboxOptions:
    """Validate caller options, naming any that are not allowed."""
    allowed = sorted(SandboxOptions.model_fields)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise OptionNotAllowed(
            f"sandbox option(s) {', '.join(unknown)} are not allowed; the options a session may "
            f"set are: {', '.join(allowed)} (hardening such as the user, capabilities and the "
            "read-only root is fixed)"
        )
    try:
        parsed = SandboxOptions.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])} = {_shown(err.get('input'))}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid sandbox options: {problems}") from None
    for mount in parsed.tmpfs_sizes:
        if mount not in config.sandbox.tmpfs:
            raise OptionNotAllowed(
                f"tmpfs_sizes names {mount!r}, which is not a configured tmpfs mount; "
                f"the mounts are: {', '.join(sorted(config.sandbox.tmpfs))}"
            )
    if parsed.image is not None:
        check_image_reference(parsed.image)
    check_limits(
        config,
        memory=parsed.memory,
        cpus=parsed.cpus,
        pids_limit=parsed.pids_limit,
        tmpfs_sizes=parsed.tmpfs_sizes,
        ttl=parsed.ttl,
        idle_timeout=parsed.idle_timeout,
        labels=parsed.labels,
        env=parsed.env,
    )
    return parsed
