"""``load_config``: the TOML file and ``SBX_*`` environment variables, layered on the defaults.

Precedence, highest first: values passed in code, ``SBX_*`` environment
variables (nested keys joined by ``__``, e.g. ``SBX_SANDBOX__MEMORY=2g``), the
TOML file (``--config``, else ``SBX_CONFIG``, else ``./sbx.toml`` when it
exists), then the defaults.

Must not: hold defaults of its own (the models in ``sections`` do).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.config.model import Config
from orchestrator.errors import ConfigError

__all__ = ["NOT_CONFIG_VARIABLES", "load_config"]


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
        key = ".".join(str(part) for part in err["loc"])
        value = err.get("input")
        message = err["msg"]
        if not key:  # a check across sections: its message names the keys itself
            lines.append(f"  {message.removeprefix('Value error, ')}")
            continue
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
