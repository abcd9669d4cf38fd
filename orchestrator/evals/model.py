"""An evaluation suite's shape: tasks, how each is solved, and how it is graded.

A ``Suite`` names ``defaults`` (image, timeout, epochs and session options
every task starts from) and ``tasks``.  A ``Task`` puts ``files`` in a fresh
sandbox, runs its ``setup`` commands, then its solver -- ``solve`` (workflow
steps; without ``needs`` each runs after the one before) or ``agent``
(Claude on the task's ``prompt``; a task with a prompt and no ``solve`` has
the defaults' agent) -- and its ``graders``: ``exit_code`` (of
the solver), ``file_matches`` and ``output_matches`` (regular expressions),
``command`` (exit 0 passes) and ``python`` (sets ``score``); the last two run
inside the task's sandbox.  Every model forbids unknown keys.

Must not: run anything, or read the files ``from:`` names (loading checks them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.workflows.model import ID_PATTERN, AgentSpec, Step

__all__ = [
    "CommandGrader",
    "Defaults",
    "ExitCodeGrader",
    "FileFrom",
    "FileMatchesGrader",
    "Grader",
    "OutputMatchesGrader",
    "Price",
    "PythonGrader",
    "Suite",
    "Task",
    "suite_schema",
]

_Strict = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

DEFAULT_TIMEOUT = 600.0
GRADER_TIMEOUT = 60.0


class FileFrom(BaseModel):
    """A file's content from a local file (relative to the suite's folder)."""

    model_config = _Strict

    from_: str = Field(alias="from", min_length=1)


class _Grader(BaseModel):
    model_config = _Strict

    name: str | None = Field(default=None, description="How reports name it.")


class ExitCodeGrader(_Grader):
    """The solver's exit code (a solve's failing or last command; an agent: 0 if it finished)."""

    type: Literal["exit_code"] = "exit_code"
    equals: int = 0


class FileMatchesGrader(_Grader):
    """A file in the sandbox matches a regular expression (multi-line: ``^``/``$`` per line)."""

    type: Literal["file_matches"] = "file_matches"
    path: str = Field(min_length=1)
    pattern: str


class OutputMatchesGrader(_Grader):
    """The solver's output (the last command's stdout, or the agent's final text) matches."""

    type: Literal["output_matches"] = "output_matches"
    pattern: str


class CommandGrader(_Grader):
    """A command in the task's sandbox: exit 0 passes."""

    type: Literal["command"] = "command"
    run: str = Field(min_length=1)
    timeout: float = Field(default=GRADER_TIMEOUT, gt=0)


class PythonGrader(_Grader):
    """Python in the task's sandbox that sets ``score`` (a bool, or a number compared with
    ``threshold``) and may set ``message``."""

    type: Literal["python"] = "python"
    code: str = Field(min_length=1)
    threshold: float = 1.0
    timeout: float = Field(default=GRADER_TIMEOUT, gt=0)


Grader = Annotated[
    ExitCodeGrader | FileMatchesGrader | OutputMatchesGrader | CommandGrader | PythonGrader,
    Field(discriminator="type"),
]


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = _Strict

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class _SessionChoices(BaseModel):
    """Session options a suite's defaults or a task may set (the sandbox's shape)."""

    model_config = _Strict

    image: str | None = None
    memory: int | str | None = None
    cpus: float | None = Field(default=None, gt=0)
    network: bool | None = None
    env: dict[str, str] | None = None
    labels: dict[str, str] | None = Field(default=None, description="On the sandboxes.")
    workdir: str | None = None
    screen: str | None = None
    timeout: float | None = Field(default=None, gt=0, description="Seconds for setup + solve.")
    epochs: int | None = Field(default=None, ge=1, le=1000)

    def session_options(self) -> dict[str, Any]:
        """The sandbox options among these choices (not the timeout or the epochs)."""
        keys = set(_SessionChoices.model_fields) - {"timeout", "epochs"}
        return self.model_dump(exclude_none=True, include=keys)


class Defaults(_SessionChoices):
    """What every task starts from."""

    agent: AgentSpec | None = Field(default=None, description="Defaults of agent solvers.")


class Task(_SessionChoices):
    id: str = Field(pattern=ID_PATTERN)
    description: str | None = None
    prompt: str | None = Field(default=None, description="The task, for an agent solver.")
    tags: list[str] = Field(default_factory=list)
    files: dict[str, str | FileFrom] = Field(
        default_factory=dict, description="Sandbox path: text, or {from: local/path}."
    )
    setup: list[str] = Field(default_factory=list, description="Commands run before solving.")
    solve: list[Step] | None = Field(default=None, description="Workflow steps (ids optional).")
    agent: AgentSpec | None = Field(
        default=None,
        description="Claude solves `prompt` (a task with a prompt and no solve has the "
        "defaults' agent).",
    )
    graders: list[Grader] = Field(min_length=1)
    screenshot: bool = Field(
        default=False, description="Keep a screenshot of the desktop after solving."
    )

    @model_validator(mode="after")
    def _one_solver(self) -> Task:
        if self.solve is not None and self.agent is not None:
            raise ValueError("give one solver: solve (steps) or agent, not both")
        if self.solve is None and self.agent is None and self.prompt is None:
            raise ValueError("give a solver: solve (steps), or a prompt for an agent")
        if self.solve is not None and not self.solve:
            raise ValueError("solve needs at least one step")
        return self


class Suite(BaseModel):
    model_config = _Strict

    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    vars: dict[str, Any] = Field(default_factory=dict, description="For solve steps' templates.")
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="Model id prefix to price; overrides what agent.prices says, for every "
        "prompt token, cached or not.",
    )
    tasks: list[Task] = Field(min_length=1)


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of suite files (``sbx workflow schema --suite``)."""
    from orchestrator.workflows.schema import json_schema

    return json_schema(Suite, "sbx evaluation suite")
