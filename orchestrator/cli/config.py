"""``sbx config show | validate FILE | schema``: the configuration as sbx sees it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from orchestrator.config import Config

__all__ = ["flag_overrides", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config",
        help="show, validate or describe the configuration",
        description="Inspect the configuration: its layers (defaults < file < profile < "
        "SBX_* environment < command line), a file's validity, its JSON Schema.",
    )
    config.set_defaults(group_parser=config)
    actions = config.add_subparsers(dest="config_command", metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print every effective value and where it came from (secrets redacted)",
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=_show, own_config=True)
    validate = actions.add_parser(
        "validate",
        help="check a config file on its own and with each of its profiles",
    )
    validate.add_argument("file", metavar="FILE", help="a .toml or .yaml config file")
    validate.set_defaults(handler=_validate, own_config=True)
    schema = actions.add_parser("schema", help="print the JSON Schema of the config file")
    schema.set_defaults(handler=_schema, own_config=True)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The global flags that set configuration keys, as the top layer."""
    logging: dict[str, str] = {}
    if getattr(args, "log_level", None):
        logging["level"] = args.log_level
    if getattr(args, "log_format", None):
        logging["format"] = args.log_format
    return {"logging": logging} if logging else {}


def _show(args: argparse.Namespace, config: Config | None) -> int:
    from orchestrator.config import explain_config
    from orchestrator.config.report import effective_values

    loaded = explain_config(args.config, profile=args.profile, **flag_overrides(args))
    values = effective_values(loaded)
    request = loaded.request
    if args.json:
        document = {
            "file": str(request.path) if request.path is not None else None,
            "profile": request.profile,
            "values": values,
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"# file: {request.path or '(none)'}   profile: {request.profile or '(none)'}")
    width = max(len(key) for key in values)
    for key, entry in values.items():
        value = json.dumps(entry["value"])
        live = "; reloads while serving" if entry["reload"] == "live" else ""
        print(f"{key:<{width}} = {value}   # {entry['source']}{live}")
    return 0


def _validate(args: argparse.Namespace, config: Config | None) -> int:
    from orchestrator.config.loading import validate_file

    profiles = validate_file(args.file)
    suffix = f" (profiles: {', '.join(profiles)})" if profiles else ""
    print(f"{args.file}: valid{suffix}")
    return 0


def _schema(args: argparse.Namespace, config: Config | None) -> int:
    from orchestrator.config.report import config_schema

    json.dump(config_schema(), sys.stdout, indent=2)
    print()
    return 0
