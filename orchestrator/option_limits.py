"""The operator's ceilings (``[limits]``), applied to a session's options before any engine call.

A request past a ceiling is refused here with ``OptionOverLimit`` -- a 422
naming the field, the value asked for and the ceiling -- instead of reaching
the engine as a 502, or being stored and served back (a 50 MB label) on
every listing.  Image references are checked against the engine's own
grammar, so ``../../etc`` is a malformed option, not an engine failure.

Must not: know the engine, or apply defaults (``sandbox_spec`` does).
"""

from __future__ import annotations

import re

from orchestrator.config import Config, human_bytes, memory_arithmetic, sandbox_memory_limit
from orchestrator.errors import ConfigError, OptionOverLimit

__all__ = ["check_image_reference", "check_limits"]

# The grammar of github.com/distribution/reference (what the Docker Engine parses).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")
_MAX_NAME = 255


def check_image_reference(image: str) -> None:
    """Refuse what the engine would not parse as an image reference or ID."""
    if _IMAGE_ID.match(image):
        return
    name = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image else image
    if not _REFERENCE.match(image) or len(name) > _MAX_NAME:
        raise ConfigError(
            f"image {image[:200]!r} is not a valid image reference (NAME[:TAG][@DIGEST], "
            "lowercase, e.g. 'code-runner', 'sbx-desktop:latest' or 'myorg/img:1.2')"
        )


def _over(field: str, asked: str, ceiling_key: str, ceiling: str) -> OptionOverLimit:
    return OptionOverLimit(
        f"{field} = {asked} is over the ceiling {ceiling_key} = {ceiling}; ask for less, or "
        "have the operator raise the limit",
        field=field,
    )


def check_limits(
    config: Config,
    *,
    memory: int | None,
    cpus: float | None,
    pids_limit: int | None,
    tmpfs_sizes: dict[str, int],
    ttl: float | None,
    idle_timeout: float | None,
    labels: dict[str, str],
    env: dict[str, str],
) -> None:
    """Raise ``OptionOverLimit`` for the first option past its ceiling in ``config.limits``."""
    limits, sandbox = config.limits, config.sandbox
    for mount, size in tmpfs_sizes.items():
        if size > limits.max_tmpfs_size:
            raise _over(
                f"tmpfs_sizes[{mount!r}]",
                human_bytes(size),
                "limits.max_tmpfs_size",
                human_bytes(limits.max_tmpfs_size),
            )
    processes = memory or sandbox.memory
    tmpfs = sandbox.tmpfs_for(processes, tmpfs_sizes)
    if sandbox_memory_limit(processes, tmpfs, sandbox.shm_size) > limits.max_memory:
        raise _over(
            "memory" if memory else "tmpfs_sizes",
            memory_arithmetic(processes, tmpfs, sandbox.shm_size)
            + " (tmpfs pages count as memory)",
            "limits.max_memory",
            human_bytes(limits.max_memory),
        )
    if cpus is not None and cpus > limits.cpus():
        raise _over("cpus", f"{cpus:g}", "limits.max_cpus", f"{limits.cpus():g}")
    if pids_limit is not None and pids_limit > limits.max_pids:
        raise _over("pids_limit", str(pids_limit), "limits.max_pids", str(limits.max_pids))
    for field, seconds in (("ttl", ttl), ("idle_timeout", idle_timeout)):
        if seconds is not None and seconds > limits.max_ttl:
            raise _over(field, f"{seconds:g} s", "limits.max_ttl", f"{limits.max_ttl:g} s")
    for field, table, count, size in (
        ("labels", labels, limits.max_labels, limits.max_label_bytes),
        ("env", env, limits.max_env, limits.max_env_bytes),
    ):
        if len(table) > count:
            raise _over(field, f"{len(table)} entries", f"limits.max_{field}", str(count))
        total = sum(len(k.encode()) + len(v.encode()) for k, v in table.items())
        if total > size:
            raise _over(
                field,
                f"{human_bytes(total)} of names and values",
                f"limits.max_{field.rstrip('s')}_bytes",
                human_bytes(size),
            )
