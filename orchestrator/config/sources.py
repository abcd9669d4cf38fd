"""The layers of the configuration, as pydantic-settings sources, lowest first.

Defaults < the file (``sbx.toml`` or ``sbx.yaml``) < the file's chosen profile
(``[profile.NAME]``) < ``SBX_*`` environment variables < values given on the
command line or in code.  pydantic-settings merges the layers key by key
within a section, so ``SBX_SANDBOX__CPUS`` leaves the file's
``sandbox.memory`` in place.

Imported only when some layer has values: pydantic-settings brings asyncio
and argparse with it, a cost ``sbx run`` with nothing configured need not pay.

Must not: format errors or decide what a value's origin is called (``origins``
does), or hold defaults of its own (the models in ``sections`` do).
"""

from __future__ import annotations

import json
import tomllib
from contextvars import ContextVar
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from orchestrator.config.model import Config
from orchestrator.config.request import ENV_DELIMITER, ENV_PREFIX, LoadRequest, is_yaml

__all__ = ["LayeredConfig", "build"]

_REQUEST: ContextVar[LoadRequest] = ContextVar("sbx_config_request")


class _Environment(EnvSettingsSource):
    """``SBX_*`` variables; a list or table may be a TOML inline value (or JSON).

    A value that is neither is passed on as the string it is, so that validation
    names the variable, the key and what is allowed.
    """

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            pass
        try:
            return json.loads(value)
        except ValueError:
            return value


class _TomlBase(TomlConfigSettingsSource):
    """The TOML file without its ``[profile.*]`` tables (a profile is a layer of its own)."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        data.pop("profile", None)
        return data


class _YamlBase(YamlConfigSettingsSource):
    """The YAML file without its ``profile:`` mapping."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        if isinstance(data, dict):
            data.pop("profile", None)
        return data


class LayeredConfig(Config, BaseSettings):
    """``Config`` read through the layers of the current ``LoadRequest``."""

    model_config = SettingsConfigDict(
        extra="forbid",
        validate_assignment=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        case_sensitive=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        request = _REQUEST.get()
        given = InitSettingsSource(settings_cls, init_kwargs=request.overrides)
        env = _Environment(
            settings_cls,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter=ENV_DELIMITER,
            case_sensitive=False,
        )
        sources: list[tuple[str, PydanticBaseSettingsSource]] = [("given", given)]
        if request.environment:
            sources.append(("env", env))
        path = request.path
        if path is not None:
            if is_yaml(path):
                if request.profile:
                    section = f"profile.{request.profile}"
                    profile_source: PydanticBaseSettingsSource = YamlConfigSettingsSource(
                        settings_cls, yaml_file=path, yaml_config_section=section
                    )
                    sources.append(("profile", profile_source))
                sources.append(("file", _YamlBase(settings_cls, yaml_file=path)))
            else:
                if request.profile:
                    profile_source = TomlConfigSettingsSource(
                        settings_cls, toml_file=path, toml_table_header=("profile", request.profile)
                    )
                    sources.append(("profile", profile_source))
                sources.append(("file", _TomlBase(settings_cls, toml_file=path)))
        request.layers = [(name, source()) for name, source in sources]
        return tuple(source for _, source in sources)


def build(request: LoadRequest) -> Config:
    """Validate the layers of ``request`` into a plain ``Config``.

    Raises pydantic's ``ValidationError``; ``request.layers`` then holds what each
    layer gave, for the error message.
    """
    token = _REQUEST.set(request)
    try:
        layered = LayeredConfig()
    finally:
        _REQUEST.reset(token)
    values = {name: getattr(layered, name) for name in Config.model_fields}
    return Config.model_construct(_fields_set=set(layered.model_fields_set), **values)
