"""``SbxSandboxConfig``: what a task asks of its sandboxes, and where the server is.

Given as ``sandbox=("sbx", SbxSandboxConfig(...))`` or as a YAML/JSON file
(``--sandbox sbx:sbx.yaml``).  The session fields are ``SessionCreate``'s,
checked here so a typo fails at task start rather than per sample.  It must
not hold the API token: configs are written into eval logs, so the token
comes from ``SBX_TOKEN`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.api.models import SessionCreate
from orchestrator.errors import ConfigError

__all__ = ["SbxSandboxConfig", "load_config"]

_SESSION_FIELDS = (
    "image",
    "memory",
    "cpus",
    "pids_limit",
    "network",
    "env",
    "workdir",
    "ttl",
    "user",
    "writable_root",
    "desktop",
    "screen",
)


class SbxSandboxConfig(BaseModel):
    """The sandboxes of one task: session options, files, and the server to use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        default=None,
        description="A running `sbx serve` (default: SBX_URL; unset: start one for the eval).",
    )
    image: str | None = Field(default=None, description="Image (default: the server's).")
    memory: str | None = Field(default=None, examples=["2g"])
    cpus: float | None = None
    pids_limit: int | None = None
    network: bool | None = None
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = Field(
        default=None, description="Where relative paths and commands start (default /workspace)."
    )
    ttl: float | None = None
    user: str | None = Field(
        default=None, description="Default user of exec (default: the image's non-root user)."
    )
    writable_root: bool = Field(
        default=True, description="A writable root filesystem (inspect's tools install there)."
    )
    desktop: bool | None = None
    screen: str | None = None
    files: dict[str, str] = Field(
        default_factory=dict,
        description="Files put in every sample's sandbox at start: sandbox path -> host path "
        "(relative to the config file) or, prefixed with 'text:', the content itself.",
    )
    labels: dict[str, str] = Field(default_factory=dict)

    def session_create(self, task_name: str) -> SessionCreate:
        """The session request for one sample of ``task_name``."""
        fields: dict[str, Any] = {
            name: getattr(self, name)
            for name in _SESSION_FIELDS
            if getattr(self, name) not in (None, {})
        }
        labels = {**self.labels, "inspect_ai": "sandbox", "inspect_task": task_name[:200]}
        try:
            return SessionCreate(**fields, labels=labels)
        except ValidationError as exc:
            raise ConfigError(f"sbx sandbox config: {exc}") from None

    def file_contents(self, base: Path | None) -> dict[str, bytes]:
        """``files`` read now: sandbox path -> bytes."""
        contents: dict[str, bytes] = {}
        for target, source in self.files.items():
            if source.startswith("text:"):
                contents[target] = source[5:].encode("utf-8")
                continue
            path = Path(source)
            if not path.is_absolute() and base is not None:
                path = base / path
            try:
                contents[target] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"sbx sandbox config: cannot read {path} for {target} ({exc.strerror}); "
                    "fix the path in files, or give the content as 'text:...'"
                ) from None
        return contents


def load_config(config: BaseModel | str | None) -> tuple[SbxSandboxConfig, Path | None]:
    """The config given to the provider (a model, a YAML/JSON file name, or none) and the
    folder relative file names start from."""
    if config is None:
        return SbxSandboxConfig(), None
    if isinstance(config, SbxSandboxConfig):
        return config, None
    if isinstance(config, BaseModel):
        raise ConfigError(
            f"the sbx sandbox takes an SbxSandboxConfig or a YAML file, not {type(config).__name__}"
        )
    path = Path(config)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the sbx sandbox config {path} ({exc.strerror}); pass an existing "
            "YAML or JSON file"
        ) from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        return SbxSandboxConfig.model_validate(data or {}), path.resolve().parent
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"sbx sandbox config {path}: {exc}") from None
