"""What ``sbx config show`` and ``sbx config schema`` print: values with their origins, the schema.

Secrets never leave here: ``SecretStr`` values, the values of
``sandbox.env`` (keys shown) and of any table entry whose name looks secret
are replaced by ``REDACTED``.

Must not: print (the CLI does) or read the layers (``loading`` does).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, SecretStr

from orchestrator.config.loading import LoadedConfig
from orchestrator.config.model import Config
from orchestrator.config.reload import is_live

__all__ = ["REDACTED", "config_schema", "effective_values"]

REDACTED = "**********"
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_SECRET_TABLES = frozenset({("sandbox", "env")})
"""Tables whose every value may be a secret: only their keys are shown."""


def _plain(value: Any) -> Any:
    """A JSON-ready value, secrets redacted."""
    if isinstance(value, SecretStr):
        return REDACTED if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {
            str(k): REDACTED if isinstance(v, str) and _SECRET_NAME.search(str(k)) else _plain(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def effective_values(loaded: LoadedConfig) -> dict[str, dict[str, Any]]:
    """Every key's value, where it came from, and whether a running server takes a change."""
    origins = loaded.origins()
    out: dict[str, dict[str, Any]] = {}
    for key, origin in origins.items():
        value: Any = loaded.config
        for part in key:
            value = getattr(value, part)
        dotted = ".".join(key)
        plain = _plain(value)
        if key in _SECRET_TABLES and isinstance(plain, dict):
            plain = dict.fromkeys(plain, REDACTED)
        out[dotted] = {
            "value": plain,
            "source": origin,
            "reload": "live" if is_live(dotted) else "restart",
        }
    return out


def config_schema() -> dict[str, Any]:
    """The JSON Schema of ``sbx.toml``/``sbx.yaml``, for editors.

    Keys a running server reloads carry ``"x-sbx-reload": "live"``, the others
    ``"restart"``; ``profile`` holds tables of the same keys.
    """
    schema = Config.model_json_schema()
    schema["title"] = "sbx configuration"
    defs = schema.get("$defs", {})
    for name, prop in schema["properties"].items():
        ref = prop.get("$ref", "")
        target = defs.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/$defs/") else None
        if target is None:
            prop["x-sbx-reload"] = "live" if is_live(name) else "restart"
            continue
        for sub, sub_prop in target.get("properties", {}).items():
            sub_prop["x-sbx-reload"] = "live" if is_live(f"{name}.{sub}") else "restart"
    schema["properties"]["profile"] = {
        "type": "object",
        "description": "Named profiles (--profile NAME or SBX_PROFILE): tables of the same "
        "keys, laid over the file's own.",
        "additionalProperties": {
            "type": "object",
            "properties": {
                name: prop for name, prop in schema["properties"].items() if name != "profile"
            },
            "additionalProperties": False,
        },
    }
    return schema
