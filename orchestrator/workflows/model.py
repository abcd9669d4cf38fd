"""A workflow file's shape: pydantic models that forbid unknown keys.

``Workflow`` is the whole file: ``vars``, ``secrets``, ``sessions`` (named
sandboxes, each with the allow-listed session options), ``steps`` and
``outputs``.  A ``Step`` does exactly one thing -- ``tool``, ``exec``,
``shell``, ``put``, ``get`` or ``agent`` -- in one session, after the steps it
``needs``, if its ``if`` holds, for each item of its ``foreach``, with a
``retry`` policy and an ``on_failure`` policy.  ``sbx workflow schema``
prints these models as JSON Schema.

Must not: check references between steps or parse templates (``checks``
does, with line numbers), or run anything.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.options import SandboxOptions

__all__ = [
    "ACTIONS",
    "AgentSpec",
    "PutSpec",
    "RetrySpec",
    "SecretSpec",
    "Step",
    "ToolSpec",
    "Workflow",
]

ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
ACTIONS = ("tool", "exec", "shell", "put", "get", "agent")
"""The keys that say what a step does; a step has exactly one."""

MAX_FOREACH_ITEMS = 10_000
MAX_CONCURRENCY = 64

_Strict = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class RetrySpec(BaseModel):
    """Try again after a failure: ``attempts`` in all, ``backoff`` seconds before the
    second, doubling each time up to ``max_backoff``."""

    model_config = _Strict

    attempts: int = Field(default=1, ge=1, le=100)
    backoff: float = Field(default=0.0, ge=0, le=3600)
    max_backoff: float = Field(default=300.0, ge=0, le=3600)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt."""
        return float(min(self.backoff * 2.0 ** (failures - 1), self.max_backoff))


class ToolSpec(BaseModel):
    """One of Claude's tools, called as Claude would (``{name, input}``), through the router."""

    model_config = _Strict

    name: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] = Field(default_factory=dict)


class PutSpec(BaseModel):
    """Write a file in the sandbox: ``content`` (text), or the local file ``from``."""

    model_config = _Strict

    path: str = Field(min_length=1)
    content: str | None = None
    from_: str | None = Field(default=None, alias="from")
    mode: int | None = Field(default=None, ge=0, le=0o7777)

    @model_validator(mode="after")
    def _one_source(self) -> PutSpec:
        if (self.content is None) == (self.from_ is None):
            raise ValueError("give exactly one of 'content' (the text) or 'from' (a local file)")
        return self


class AgentSpec(BaseModel):
    """Claude works on ``task`` in the step's session with the given tools."""

    model_config = _Strict

    task: str | None = Field(default=None, min_length=1)
    model: str | None = None
    tools: list[str] = Field(default_factory=lambda: ["bash"], min_length=1)
    max_turns: int = Field(default=20, ge=1, le=1000)
    max_tokens: int = Field(default=4096, ge=1, le=128_000)
    token_budget: int | None = Field(default=None, ge=1)
    system: str | None = None
    base_url: str | None = None


class SecretSpec(BaseModel):
    """Where a secret's value comes from: an environment variable of the process running it."""

    model_config = _Strict

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Step(BaseModel):
    """One step of a workflow."""

    model_config = _Strict

    id: str | None = Field(default=None, pattern=ID_PATTERN)
    name: str | None = Field(default=None, description="A description for people.")
    session: str | None = Field(
        default=None, description="Which of `sessions` (default: the only one)."
    )
    needs: list[str] = Field(default_factory=list)
    if_: str | bool | None = Field(default=None, alias="if")
    retry: RetrySpec | None = None
    on_failure: Literal["fail", "continue"] = "fail"
    foreach: list[Any] | str | None = Field(
        default=None, description="Items (or a template giving a list); `item` in templates."
    )
    concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    timeout: float | None = Field(default=None, gt=0, description="Seconds per attempt.")
    env: dict[str, str] = Field(default_factory=dict, description="For exec steps.")
    cwd: str | None = Field(default=None, description="For exec steps.")
    stdin: str | None = Field(default=None, description="For exec steps.")

    tool: ToolSpec | None = None
    exec: str | list[str] | None = Field(default=None, description="A shell string, or argv.")
    shell: str | None = Field(default=None, description="In the session's persistent shell.")
    shell_name: str = Field(default="workflow", pattern=ID_PATTERN)
    put: PutSpec | None = None
    get: str | list[str] | None = Field(default=None, description="Paths to read back.")
    agent: AgentSpec | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [key for key in ACTIONS if getattr(self, key) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"a step does exactly one of {', '.join(ACTIONS)}; this one has {found}"
            )
        if isinstance(self.exec, list) and not self.exec:
            raise ValueError("exec as a list needs at least the program to run")
        if isinstance(self.foreach, list) and len(self.foreach) > MAX_FOREACH_ITEMS:
            raise ValueError(f"foreach has over {MAX_FOREACH_ITEMS} items; split the work")
        if self.concurrency is not None and self.foreach is None:
            raise ValueError("concurrency limits a foreach step; this step has no foreach")
        return self

    @property
    def action(self) -> str:
        return next(key for key in ACTIONS if getattr(self, key) is not None)


class Workflow(BaseModel):
    """A workflow file: named sandboxes, a DAG of steps, and the outputs it reports."""

    model_config = _Strict

    name: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, SecretSpec] = Field(default_factory=dict)
    sessions: dict[str, SandboxOptions] = Field(
        default_factory=lambda: {"main": SandboxOptions()},
        description="Named sandboxes and their session options (default: one, `main`).",
    )
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, description="Seconds for the whole run.")

    @model_validator(mode="after")
    def _named_things(self) -> Workflow:
        for name in [*self.vars, *self.secrets, *self.sessions]:
            if not isinstance(name, str) or not name:
                raise ValueError(f"names must be non-empty strings, got {name!r}")
        if not self.sessions:
            raise ValueError("sessions needs at least one sandbox (e.g. `main: {}`)")
        return self
