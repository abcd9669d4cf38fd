"""The JSON Schema of workflow files (``sbx workflow schema``), from the models themselves.

Must not: describe anything the models do not check.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from orchestrator.workflows.model import Workflow

__all__ = ["json_schema"]

_SIZES = ("memory",)
"""Session options given in bytes that also take sizes such as ``512m``."""


def _sizes_as_text_too(schema: dict[str, Any]) -> None:
    for definition in schema.get("$defs", {}).values():
        for name in _SIZES:
            prop = definition.get("properties", {}).get(name)
            if prop is not None and "anyOf" in prop:
                prop["anyOf"].insert(0, {"type": "string", "pattern": r"^\d+(\.\d+)?[kmgt]?i?b?$"})


def json_schema(model: type[BaseModel] = Workflow, title: str = "sbx workflow") -> dict[str, Any]:
    """The schema of ``model`` (a workflow by default), as a JSON-able dict."""
    schema = model.model_json_schema(by_alias=True)
    _sizes_as_text_too(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema
