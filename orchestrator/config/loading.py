"""``load_config``: the layers of ``sources`` validated into one ``Config``.

Precedence, highest first: values given on the command line or in code,
``SBX_*`` environment variables (nested keys joined by ``__``, e.g.
``SBX_SANDBOX__MEMORY=2g``), the profile chosen by ``--profile`` or
``SBX_PROFILE`` (``[profile.NAME]`` in the file), the file (``--config``, else
``SBX_CONFIG``, else ``./sbx.toml`` or ``./sbx.yaml`` when one exists), then
the defaults.

Must not: hold defaults of its own (the models in ``sections`` do).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.config.model import Config
from orchestrator.config.origins import (
    config_keys,
    describe_errors,
    env_problems,
    key_lines,
    origin_of,
)
from orchestrator.config.request import ENV_DELIMITER, ENV_PREFIX, LoadRequest, is_yaml
from orchestrator.errors import ConfigError

__all__ = [
    "NOT_CONFIG_VARIABLES",
    "LoadedConfig",
    "explain_config",
    "load_config",
    "validate_file",
]

NOT_CONFIG_VARIABLES = frozenset(
    {
        "SBX_CONFIG",  # where the file is
        "SBX_PROFILE",  # which of its profiles
        "SBX_URL",  # the CLI client's server
        "SBX_TOKEN",  # the client's token, or the single-user server token
        "SBX_TOKEN_OWNER",  # that token's owner
        "SBX_DATA",  # compose: the host directory for the memory store and runs
        "SBX_PUBLISH",  # compose: where the server is published
        "SBX_POOL_SIZE",  # compose: spares kept by the server
    }
)
"""``SBX_*`` variables that are not configuration keys.  Any other shaped like a key
(``SBX_SECTION__KEY``, or close to a key's spelling) must be one; the rest are ignored."""

DEFAULT_FILES = ("sbx.toml", "sbx.yaml", "sbx.yml")


@dataclass(frozen=True)
class LoadedConfig:
    """A loaded ``Config`` and how to load it again (``sbx serve`` reloads from it)."""

    config: Config
    request: LoadRequest

    def origin(self, key: tuple[str, ...]) -> str:
        return origin_of(self.request, key)

    def origins(self) -> dict[tuple[str, ...], str]:
        lines = key_lines(self.request.path) if self.request.path is not None else {}
        return {key: origin_of(self.request, key, lines) for key in config_keys()}

    def reload(self) -> LoadedConfig:
        """The same file, profile and given values, read again (``ConfigError`` if bad)."""
        request = self.request
        return explain_config(
            request.path,
            profile=request.profile,
            environment=request.environment,
            **request.overrides,
        )


def _config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("SBX_CONFIG")
    if from_env:
        return Path(from_env)
    found = [Path(name) for name in DEFAULT_FILES if Path(name).is_file()]
    if len(found) > 1:
        raise ConfigError(
            f"both {found[0]} and {found[1]} are here; keep one, or choose with --config"
        )
    return found[0] if found else None


def _read_file(path: Path) -> dict[str, Any]:
    """The file's data, or a ``ConfigError`` naming the file (and line) and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; create it (see sbx.example.toml) "
            "or unset SBX_CONFIG / drop --config"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    if is_yaml(path):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections at the top")
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _check_profile(path: Path | None, data: dict[str, Any], profile: str) -> None:
    if path is None:
        raise ConfigError(
            f"profile {profile!r} (from --profile or SBX_PROFILE) needs a config file with a "
            f"[profile.{profile}] table, and none was found (--config, SBX_CONFIG, ./sbx.toml, "
            "./sbx.yaml)"
        )
    profiles = data.get("profile")
    names = sorted(profiles) if isinstance(profiles, dict) else []
    if profile in names and isinstance(profiles, dict) and isinstance(profiles[profile], dict):
        return
    have = f"its profiles are {', '.join(names)}" if names else "it defines none"
    raise ConfigError(
        f"profile {profile!r} (from --profile or SBX_PROFILE) is not in {path}: {have}. "
        f"Add a [profile.{profile}] table or choose another"
    )


def explain_config(
    path: str | os.PathLike[str] | None = None,
    *,
    profile: str | None = None,
    environment: bool = True,
    **overrides: Any,
) -> LoadedConfig:
    """Load like ``load_config`` and keep where each value came from.

    ``environment=False`` leaves ``SBX_*`` out (to check a file on its own).
    """
    file_path = _config_path(path)
    if environment:
        profile = profile or os.environ.get("SBX_PROFILE") or None
    if file_path is not None:
        data = _read_file(file_path)
        if profile:
            _check_profile(file_path, data, profile)
    elif profile:
        _check_profile(None, {}, profile)
    problems = env_problems(NOT_CONFIG_VARIABLES) if environment else []
    request = LoadRequest(file_path, profile, dict(overrides), environment)
    try:
        config = _build(request)
    except ValidationError as exc:
        text = describe_errors(exc, request)
        raise ConfigError("\n".join([text, *problems])) from None
    except Exception as exc:  # the file changed under us (a reload mid-edit), or a source failed
        where = file_path if file_path is not None else "the environment"
        raise ConfigError(f"configuration could not be read from {where}: {exc}") from None
    if problems:
        raise ConfigError("\n".join(["invalid configuration:", *problems]))
    return LoadedConfig(config, request)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    profile: str | None = None,
    **overrides: Any,
) -> Config:
    """Build a ``Config`` from the file, its profile, ``SBX_*`` and ``overrides``.

    Raises ``ConfigError`` naming each bad key, where it was set (file and line,
    or the environment variable), its value and what is allowed.
    """
    loaded = explain_config(path, profile=profile, **overrides)
    config = loaded.config
    config._loaded = loaded
    return config


def _sets_keys(environment: bool) -> bool:
    """Whether an ``SBX_*`` variable names a key or section (``SBX_OWNER``, ``SBX_POOL__SIZE``)."""
    if not environment:
        return False
    fields = Config.model_fields
    return any(
        name.upper().startswith(ENV_PREFIX)
        and name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)[0] in fields
        for name in os.environ
    )


def _build(request: LoadRequest) -> Config:
    """The layers validated; the defaults alone, without pydantic-settings, when every
    layer is empty."""
    if request.path is None and not request.overrides and not _sets_keys(request.environment):
        return Config()
    from orchestrator.config.sources import build

    return build(request)


def validate_file(path: str | os.PathLike[str]) -> list[str]:
    """Check ``path`` on its own (no ``SBX_*``), and with each of its profiles laid over.

    Returns the profiles' names; raises ``ConfigError`` for the first one that fails.
    """
    file_path = Path(path)
    data = _read_file(file_path)
    explain_config(file_path, environment=False)
    profiles = data.get("profile")
    names = sorted(profiles) if isinstance(profiles, dict) else []
    for name in names:
        try:
            explain_config(file_path, profile=name, environment=False)
        except ConfigError as exc:
            raise ConfigError(f"with profile {name}: {exc}") from None
    return names
