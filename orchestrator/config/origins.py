"""Where each configuration value came from, and errors that say so.

A value's origin is the highest layer that sets its key: ``given`` (the
command line, or code), an ``SBX_*`` environment variable, the file's profile
table or the file itself (with the line), else the default.  Errors name that
origin, the key, the value and what is allowed, with a "did you mean" for an
unknown key.

Must not: read the layers itself (``sources`` does).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.config.model import Config
from orchestrator.config.request import ENV_DELIMITER, ENV_PREFIX, LoadRequest, is_yaml

__all__ = [
    "config_keys",
    "describe_errors",
    "env_problems",
    "key_lines",
    "origin_of",
]

Key = tuple[str, ...]


def config_keys() -> list[Key]:
    """Every key: ``(section, key)`` for a section's, ``(key,)`` for a top-level one."""
    keys: list[Key] = []
    for name, info in Config.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            keys.extend((name, sub) for sub in model.model_fields)
        else:
            keys.append((name,))
    return keys


def env_name(key: Key) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(key).upper()


# --- line numbers -------------------------------------------------------------------------

_TOML_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_ASSIGN = re.compile(r"""^\s*([A-Za-z0-9_\-."' ]+?)\s*=""")


def _toml_parts(text: str) -> Key:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def key_lines(path: Path) -> dict[Key, int]:
    """The line (1-based) where each key of the file is set; a table's header line too."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    if is_yaml(path):
        return _yaml_lines(text)
    lines: dict[Key, int] = {}
    table: Key = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TOML_HEADER.match(line)
        if header:
            table = _toml_parts(header.group(1))
            lines.setdefault(table, number)
            continue
        assign = _TOML_ASSIGN.match(line)
        if assign:
            lines.setdefault(table + _toml_parts(assign.group(1)), number)
    return lines


def _yaml_lines(text: str) -> dict[Key, int]:
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[Key, int] = {}

    def walk(node: Any, prefix: Key) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*prefix, str(key_node.value))
                lines.setdefault(key, key_node.start_mark.line + 1)
                walk(value_node, key)

    if root is not None:
        walk(root, ())
    return lines


# --- origins ------------------------------------------------------------------------------


def _has(data: dict[str, Any], key: Key) -> bool:
    node: Any = data
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _env_variable(key: Key) -> str:
    """The variable that set ``key`` (any letter case is accepted)."""
    wanted = env_name(key)
    for name in os.environ:
        if name.upper() == wanted:
            return name
    return wanted


def _file_place(request: LoadRequest, key: Key, lines: dict[Key, int]) -> str:
    for end in range(len(key), 0, -1):
        line = lines.get(key[:end])
        if line is not None:
            return f"{request.path} line {line}"
    return str(request.path)


def origin_of(request: LoadRequest, key: Key, lines: dict[Key, int] | None = None) -> str:
    """Who set ``key``: ``command line``, ``env SBX_...``, ``FILE line N``, or ``default``."""
    if lines is None:
        lines = key_lines(request.path) if request.path is not None else {}
    for layer, data in request.layers:
        if not _has(data, key):
            continue
        if layer == "given":
            return "command line"
        if layer == "env":
            return f"env {_env_variable(key)}"
        if layer == "profile":
            place = _file_place(request, ("profile", str(request.profile), *key), lines)
            return f"{place} [profile {request.profile}]"
        return _file_place(request, key, lines)
    return "default"


# --- errors -------------------------------------------------------------------------------


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _fields_at(key: Key) -> list[str]:
    """The keys a table at ``key`` allows (its parent model's fields)."""
    model: type[BaseModel] = Config
    for part in key:
        info = model.model_fields.get(part)
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def describe_errors(exc: ValidationError, request: LoadRequest) -> str:
    """One line per problem: key, value, origin, what is allowed."""
    lines_of_file = key_lines(request.path) if request.path is not None else {}
    out = ["invalid configuration:"]
    for err in exc.errors():
        key = tuple(str(part) for part in err["loc"])
        message = err["msg"]
        if not key:  # a check across sections: its message names the keys itself
            out.append(f"  {message.removeprefix('Value error, ')}")
            continue
        dotted = ".".join(key)
        origin = origin_of(request, key, lines_of_file)
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(key[-1], _fields_at(key[:-1]))
            out.append(
                f"  {dotted}: unknown key ({origin}){hint}; the keys are listed in "
                "sbx.example.toml and by `sbx config schema`"
            )
            continue
        value = err.get("input")
        out.append(f"  {dotted} = {value!r} ({origin}): {message}")
    return "\n".join(out)


def _spellings() -> dict[str, Key]:
    """Each key and section by its ``SBX_*`` spelling (without the prefix, lower case)."""
    found: dict[str, Key] = {}
    for key in config_keys():
        found[ENV_DELIMITER.join(key)] = key
        found.setdefault(key[0], key[:1])
    return found


def _unknown_env(names: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Each variable shaped like a key that is none, with a hint.

    Shaped like a key: ``SBX_A__B``; a section's name (``SBX_POOL``); a section and
    key run together (``SBX_POOLSIZE``, ``SBX_POOL_SIZE``); or close to a top-level
    key (``SBX_OWNR``).  Anything else (``SBX_DEPLOY_REGION``) is another program's.
    """
    spellings = _spellings()
    known = set(config_keys())
    sections = {key[0] for key in known if len(key) == 2}
    run_together = {
        f"{key[0]}{glue}{key[1]}": key for key in known if len(key) == 2 for glue in ("", "_")
    }
    top_level = [key[0] for key in known if len(key) == 1]
    for name in names:
        rest = name[len(ENV_PREFIX) :].lower()
        parts = tuple(rest.split(ENV_DELIMITER))
        if parts[:1] in known or parts[:2] in known:
            continue  # a key (deeper parts go into a table-valued key)
        if ENV_DELIMITER in rest:
            close = difflib.get_close_matches(rest, list(spellings), n=1, cutoff=0.6)
            if close:
                hint = f"did you mean {env_name(spellings[close[0]])}?"
            elif parts[0] in sections:
                hint = f"[{parts[0]}] has " + ", ".join(_fields_at(parts[:1]))
            else:
                hint = "the sections are " + ", ".join(sorted(sections))
        elif rest in sections:
            hint = f"[{rest}] is a section; set one of its keys, e.g. {name.upper()}__KEY"
        elif rest in run_together:
            hint = f"did you mean {env_name(run_together[rest])}?"
        else:
            close = difflib.get_close_matches(rest, top_level, n=1, cutoff=0.8)
            if not close:
                continue  # not shaped like a key: some other program's variable
            hint = f"did you mean {env_name((close[0],))}?"
        yield name, hint


def env_problems(ignored: frozenset[str]) -> list[str]:
    """``SBX_*`` variables shaped like keys that are none (``SBX_SESION__TTL``)."""
    names = (
        name
        for name in sorted(os.environ)
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in ignored
    )
    return [
        f"  environment variable {name}: not a configuration key; {hint}"
        for name, hint in _unknown_env(names)
    ]
