"""YAML with line numbers: a document's data, and where each of its values starts.

Workflow files and evaluation suites are YAML; an error in one must name the
file, the line and the field.  ``load_yaml`` parses with PyYAML's safe
loader and walks the composed node tree beside the constructed data,
recording the start line of every value and every mapping key by its path
(``("steps", 2, "needs", 0)``), so a problem found later -- by pydantic, by
the DAG check, by the template checker -- can be traced back to its line.
``LoadError`` is the one error for a file that does not load: every problem,
each as ``FILE:LINE: FIELD: message``.

Must not: run, validate or interpret what the document says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator.errors import ConfigError

__all__ = ["LoadError", "Path", "Problem", "SourceMap", "format_path", "load_yaml"]

Path = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """``("steps", 2, "needs", 0)`` as ``steps[2].needs[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(document)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where, which field, and what to do."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"


class LoadError(ConfigError):
    """A workflow or suite that does not load; ``problems`` holds each, with its line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]


@dataclass
class SourceMap:
    """Start lines (1-based) of a document's values, by path."""

    file: str
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one."""
        parts = tuple(path)
        while True:
            line = self.lines.get(parts)
            if line is not None or not parts:
                return line
            parts = parts[:-1]

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), message)

    def error(self, path: Sequence[str | int], message: str) -> LoadError:
        return LoadError([self.problem(path, message)])


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """The document in ``text`` and its source map; ``LoadError`` for YAML that does not parse."""
    source = SourceMap(file)
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # refuses characters YAML does not allow, at once
        node = loader.get_single_node()
        if node is None:
            return None, source
        data = loader.construct_document(node)
        _walk(loader, node, (), source.lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        raise LoadError([Problem(file, line, "(yaml)", f"not valid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise LoadError([Problem(file, None, "(yaml)", f"not valid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, source


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _key(loader, key_node)
            if key is None:
                continue
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            _walk(loader, value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(loader, item, (*path, index), lines)


def _key(loader: yaml.SafeLoader, node: yaml.Node) -> str | int | None:
    if not isinstance(node, yaml.ScalarNode):
        return None
    value = loader.construct_object(node)
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str | int) else str(value)
