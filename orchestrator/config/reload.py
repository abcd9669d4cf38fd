"""Which configuration changes a running server can take, and the plan to take them.

``plan_reload`` compares the running configuration with one read again: the
changed keys that can change while serving (``LIVE_KEYS``: limits and
ceilings, pool sizes, tokens, log level) go into a candidate ``Config`` that
is validated whole before anything is applied; the others are listed as
needing a restart and left as they run.  ``apply`` swaps the candidate's
sections into the running ``Config`` in one step, with no checkpoint in
between, so no task sees half a change.

Must not: read files, log, or know the server (``orchestrator.api`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.config.model import Config

__all__ = ["LIVE_KEYS", "ReloadPlan", "apply", "is_live", "plan_reload"]

LIVE_KEYS = frozenset(
    {
        "limits.*",
        "session.max_sessions",
        "pool.size",
        "pool.max_age",
        "pool.retry_after",
        "api.tokens",
        "api.metrics_token",
        "logging.level",
    }
)
"""Keys a running ``sbx serve`` takes on SIGHUP or when its file changes; ``section.*``
means every key of the section.  Any other key needs a restart."""


def is_live(key: str) -> bool:
    return key in LIVE_KEYS or f"{key.split('.', 1)[0]}.*" in LIVE_KEYS


def _leaves(config: Config) -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for name in Config.model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                leaves[f"{name}.{sub}"] = getattr(value, sub)
        else:
            leaves[name] = value
    return leaves


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload would change: ``live`` keys applied, ``restart`` keys not."""

    candidate: Config
    live: tuple[str, ...]
    restart: tuple[str, ...]
    sections: tuple[str, ...]
    """The sections whose objects ``apply`` swaps."""


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """The running configuration with ``new``'s live changes, validated as a whole.

    Raises ``ValidationError`` when the live changes do not fit what must stay
    as it runs (a ceiling lowered under a default that needs a restart).
    """
    before, after = _leaves(running), _leaves(new)
    changed = [key for key in after if after[key] != before[key]]
    live = tuple(key for key in changed if is_live(key))
    restart = tuple(key for key in changed if not is_live(key))
    updates: dict[str, dict[str, Any]] = {}
    for key in live:
        section, _, sub = key.partition(".")
        updates.setdefault(section, {})[sub] = after[key]
    values: dict[str, Any] = {name: getattr(running, name) for name in Config.model_fields}
    for section, fields in updates.items():
        values[section] = getattr(running, section).model_copy(update=fields)
    candidate = Config.model_validate(values)
    return ReloadPlan(candidate, live, restart, tuple(updates))


def apply(running: Config, plan: ReloadPlan) -> None:
    """Swap the plan's sections into ``running`` at once (readers hold ``running``)."""
    running.__dict__.update({name: getattr(plan.candidate, name) for name in plan.sections})


def validation_message(exc: ValidationError) -> str:
    return "; ".join(err["msg"].removeprefix("Value error, ") for err in exc.errors())
