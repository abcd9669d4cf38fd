"""Reading a suite: YAML to checked tasks, each with its sandbox options, solver and digest.

Every problem names the file, the line and the field, as a workflow's do:
unknown keys, duplicate task ids, a task with no solver or two, an agent
task without a ``prompt``, a ``from:`` file that does not exist, a pattern
that is not a regular expression, session options that are not allowed,
and in ``solve`` steps everything a workflow checks (references, cycles...).
Each task's ``digest`` changes whenever anything that decides its result
changes, so a resumed run re-runs exactly those tasks.

Must not: run anything.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from orchestrator.evals.model import (
    DEFAULT_TIMEOUT,
    FileFrom,
    FileMatchesGrader,
    OutputMatchesGrader,
    Suite,
    Task,
)
from orchestrator.options import SandboxOptions
from orchestrator.workflows.checks import check_workflow
from orchestrator.workflows.loading import read_document, validate_document
from orchestrator.workflows.model import AgentSpec, Step, Workflow
from orchestrator.workflows.source import LoadError, Problem, SourceMap

__all__ = ["LoadedSuite", "PlannedTask", "load_suite"]


@dataclass(frozen=True)
class PlannedTask:
    """A task as it will run: its options, solver workflow, limits and digest."""

    task: Task
    options: dict[str, Any]
    solve: Workflow
    timeout: float
    epochs: int
    digest: str
    model: str | None
    """The agent solver's model (for prices), ``None`` for steps."""

    @property
    def id(self) -> str:
        return self.task.id


@dataclass(frozen=True)
class LoadedSuite:
    suite: Suite
    file: str
    base_dir: Path
    tasks: list[PlannedTask]

    @property
    def name(self) -> str:
        return self.suite.name


def _chained(steps: list[Step]) -> list[Step]:
    """Ids for steps without one (``solve-N``); a step without ``needs`` follows the last."""
    named = [
        step if step.id is not None else step.model_copy(update={"id": f"solve-{i + 1}"})
        for i, step in enumerate(steps)
    ]
    chained: list[Step] = []
    for index, step in enumerate(named):
        if index and "needs" not in step.model_fields_set:
            step = step.model_copy(update={"needs": [named[index - 1].id]})  # noqa: PLW2901
        chained.append(step)
    return chained


def _agent_spec(suite: Suite, task: Task) -> AgentSpec:
    base = suite.defaults.agent.model_dump(exclude_unset=True) if suite.defaults.agent else {}
    own = task.agent.model_dump(exclude_unset=True) if task.agent else {}
    merged = {**base, **own, "task": task.prompt}
    return AgentSpec.model_validate(merged)


def _digest(suite: Suite, task: Task) -> str:
    basis = {
        "task": task.model_dump(mode="json", by_alias=True),
        "defaults": suite.defaults.model_dump(mode="json", by_alias=True),
        "vars": suite.vars,
    }
    text = json.dumps(basis, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Planner:
    def __init__(self, suite: Suite, source: SourceMap, base_dir: Path) -> None:
        self.suite = suite
        self.source = source
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(self.source.problem(path, message))

    def options(self, task: Task, at: tuple[str | int, ...]) -> dict[str, Any]:
        defaults = self.suite.defaults.session_options()
        own = task.session_options()
        merged: dict[str, Any] = {**defaults, **own, "memories": False}
        for table in ("env", "labels"):
            joined = {**defaults.get(table, {}), **own.get(table, {})}
            if joined:
                merged[table] = joined
        try:
            parsed = SandboxOptions.model_validate(merged)
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                place = (*at, field) if field in task.model_fields_set else ("defaults", field)
                message = str(error["msg"]).removeprefix("Value error, ")
                problem = self.source.problem(place, f"session option {field}: {message}")
                if problem not in self.problems:  # a default's problem is said once
                    self.problems.append(problem)
            return merged
        return parsed.model_dump(exclude_defaults=True)

    def check_files(self, task: Task, at: tuple[str | int, ...]) -> None:
        for path, content in task.files.items():
            if not path.startswith("/"):
                self.add((*at, "files", path), f"{path!r}: give the sandbox path in full")
            if isinstance(content, FileFrom):
                local = self.base_dir / content.from_
                if not local.is_file():
                    self.add((*at, "files", path, "from"), f"no such local file: {local}")
        for index, grader in enumerate(task.graders):
            if isinstance(grader, FileMatchesGrader | OutputMatchesGrader):
                try:
                    re.compile(grader.pattern, re.MULTILINE)
                except re.error as exc:
                    where = (*at, "graders", index, "pattern")
                    self.add(where, f"not a regular expression: {exc}")

    def solve(self, task: Task, at: tuple[str | int, ...]) -> Workflow:
        if task.solve is None:
            if not task.prompt:
                self.add((*at, "agent"), "an agent solver needs the task's prompt: set prompt")
            steps = [Step(id="agent", agent=_agent_spec(self.suite, task))] if task.prompt else []
            steps = steps or [Step(id="agent", exec="true")]
            return Workflow(vars=self.suite.vars, steps=steps)
        assert task.solve is not None
        workflow = Workflow(vars=self.suite.vars, steps=_chained(task.solve))
        try:
            return check_workflow(
                workflow, self.source, steps_path=(*at, "solve"), outputs_path=(*at, "outputs")
            )
        except LoadError as exc:
            self.problems += exc.problems
            return workflow

    def plan(self) -> list[PlannedTask]:
        seen: dict[str, int] = {}
        planned: list[PlannedTask] = []
        defaults = self.suite.defaults
        for index, task in enumerate(self.suite.tasks):
            at: tuple[str | int, ...] = ("tasks", index)
            if task.id in seen:
                self.add(
                    (*at, "id"), f"duplicate task id {task.id!r} (also tasks[{seen[task.id]}])"
                )
            seen.setdefault(task.id, index)
            self.check_files(task, at)
            options = self.options(task, at)
            solve = self.solve(task, at)
            model = None
            if task.solve is None:
                model = (task.agent.model if task.agent else None) or (
                    defaults.agent.model if defaults.agent else None
                )
            planned.append(
                PlannedTask(
                    task=task,
                    options=options,
                    solve=solve,
                    timeout=task.timeout or defaults.timeout or DEFAULT_TIMEOUT,
                    epochs=task.epochs or defaults.epochs or 1,
                    digest=_digest(self.suite, task),
                    model=model,
                )
            )
        if self.problems:
            raise LoadError(self.problems)
        return planned


def load_suite(path: str | Path) -> LoadedSuite:
    """A checked suite from a YAML file; ``LoadError`` naming every problem otherwise."""
    data, source = read_document(Path(path))
    suite = validate_document(Suite, data, source)
    base_dir = Path(path).resolve().parent
    tasks = _Planner(suite, source, base_dir).plan()
    return LoadedSuite(suite, str(path), base_dir, tasks)
