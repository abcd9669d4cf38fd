"""Reading a workflow: YAML (from a file or text) or data, to a checked ``Workflow``.

``load_workflow`` accepts a path, YAML text, a mapping or a ``Workflow`` and
returns the workflow with ids and sessions filled in, or raises
``LoadError`` naming every problem's file, line and field.
``validate_document`` turns pydantic's errors into such problems for any
model (evaluation suites use it too).

Must not: run anything.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path as FilePath
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel

from orchestrator.workflows.checks import check_workflow
from orchestrator.workflows.model import Workflow
from orchestrator.workflows.source import LoadError, Problem, SourceMap, load_yaml

__all__ = [
    "WorkflowSource",
    "is_file",
    "load_workflow",
    "load_workflow_text",
    "read_document",
    "validate_document",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
WorkflowSource = str | os.PathLike[str] | Mapping[str, Any] | Workflow
"""A path to a YAML file, YAML text, the data, or a ``Workflow``."""


def read_document(source: str | os.PathLike[str]) -> tuple[Any, SourceMap]:
    """A YAML file's data and source map; YAML text (it has a newline or a ':') works too."""
    if isinstance(source, str) and ("\n" in source or ":" in source) and not is_file(source):
        return load_yaml(source, "<workflow>")
    path = FilePath(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError([Problem(str(path), None, "(file)", f"cannot read it: {exc}")]) from None
    return load_yaml(text, str(path))


def is_file(text: str) -> bool:
    """Whether ``text`` names a file (rather than being YAML text)."""
    try:
        return len(text) < 4096 and FilePath(text).is_file()
    except (OSError, ValueError):
        return False


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _field_of(model: type[BaseModel], name: str) -> Any:
    for field_name, info in model.model_fields.items():
        if name in (field_name, info.alias):
            return info.annotation
    return None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model whose object holds the value at ``loc`` (best effort, for messages)."""
    candidates = [root]
    for part in loc:
        if isinstance(part, int):
            continue
        inner = [(m, a) for m in candidates if (a := _field_of(m, part)) is not None]
        if inner:
            candidates = _models_in(inner[0][1])
        else:
            tagged = [
                m
                for m in candidates
                if "type" in m.model_fields and m.model_fields["type"].default == part
            ]
            candidates = tagged or candidates
        if not candidates:
            return None
    return candidates[0] if len(candidates) == 1 else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _message(model: type[BaseModel], error: Any) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        keys = f"; the keys here are: {', '.join(_keys_of(owner))}" if owner else ""
        return f"unknown key {loc[-1]!r}{keys}"
    if kind == "missing":
        return "required, but missing"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    if "input" in error and kind not in ("model_type", "dict_type"):
        return f"{message} (got {_shown(error['input'])})"
    return message


def _data_path(data: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """``loc`` without the parts that are not in the data (a union's tag, a missing key)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if (isinstance(current, Mapping) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        ):
            path.append(part)
            current = current[part]  # type: ignore[index]
        elif not isinstance(current, Mapping | list):
            break
        # Otherwise a part that is not in the data (a union's tag, a missing key): skipped.
    return tuple(path)


def validate_document(
    model: type[ModelT], data: Any, source: SourceMap, prefix: tuple[str | int, ...] = ()
) -> ModelT:
    """``data`` as ``model``; ``LoadError`` with a line for each of pydantic's complaints."""
    if not isinstance(data, Mapping):
        got = "nothing" if data is None else type(data).__name__
        raise LoadError([source.problem(prefix, f"expected a mapping of keys, got {got}")])
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = (*prefix, *_data_path(data, error["loc"]))
            problems.append(source.problem(path, _message(model, error)))
        raise LoadError(problems) from None


def load_workflow_text(text: str, file: str = "<workflow>") -> Workflow:
    """A checked workflow from YAML text, never read as a path (for text from elsewhere)."""
    data, where = load_yaml(text, file)
    return check_workflow(validate_document(Workflow, data, where), where)


def load_workflow(source: WorkflowSource) -> Workflow:
    """A checked workflow from a path, YAML text, data or a model; ``LoadError`` otherwise."""
    if isinstance(source, Workflow):
        return check_workflow(source, SourceMap("<workflow>"))
    if isinstance(source, Mapping):
        data, where = dict(source), SourceMap("<workflow>")
    else:
        data, where = read_document(source)
    workflow = validate_document(Workflow, data, where)
    return check_workflow(workflow, where)
