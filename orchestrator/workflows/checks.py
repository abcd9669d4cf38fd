"""Load-time checks of a workflow: everything that can be wrong before anything runs.

Given a parsed ``Workflow`` and its ``SourceMap``, ``check_workflow`` gives
steps without an id one (``step-N``), then finds: duplicate ids, unknown
sessions, ``needs`` naming unknown steps, cycles, templates that do not
parse, and references to a variable, secret or step output that cannot
exist -- an undeclared name, a step the referring step does not (directly
or through others) need, a field the step's kind does not produce, ``item``
outside a ``foreach``.  Every problem names its file, line and field.

Must not: run anything, or evaluate templates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.workflows.model import Step, Workflow
from orchestrator.workflows.source import LoadError, Path, Problem, SourceMap
from orchestrator.workflows.template import (
    Ref,
    TemplateError,
    parse_expression,
    parse_template,
    refs_of,
)

__all__ = ["COMMON_OUTPUTS", "OUTPUTS", "check_workflow", "templated_fields"]

COMMON_OUTPUTS = frozenset({"status", "seconds", "attempts", "error"})
OUTPUTS: dict[str, frozenset[str]] = {
    "exec": frozenset({"stdout", "stderr", "exit_code", "json", "timed_out"}),
    "shell": frozenset({"stdout", "stderr", "exit_code", "json", "timed_out"}),
    "tool": frozenset({"text", "json", "is_error"}),
    "put": frozenset({"files", "path"}),
    "get": frozenset({"text", "json", "files"}),
    "agent": frozenset(
        {
            "text",
            "json",
            "stop_reason",
            "turns",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cost_usd",
            "exit_code",
        }
    ),
}
"""What each kind of step produces (``steps.ID.FIELD``), beside the common fields."""
_DEEP = frozenset({"json", "files", "results"})
ROOTS = ("vars", "secrets", "steps", "item")


@dataclass(frozen=True)
class _Field:
    path: Path
    text: str
    bare: bool = False
    """A bare expression (``if: a == b``) rather than a template."""
    item: bool = False
    """May use ``item`` (inside a ``foreach`` step's action)."""


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def templated_fields(step: Step, base: Path) -> Iterator[_Field]:
    """Every string of a step that may hold templates, with its path."""
    looped = step.foreach is not None
    if isinstance(step.if_, str):
        yield _Field((*base, "if"), step.if_, bare="${{" not in step.if_)
    if isinstance(step.foreach, str):
        yield _Field((*base, "foreach"), step.foreach)
    elif isinstance(step.foreach, list):
        for path, text in _strings(step.foreach, (*base, "foreach")):
            yield _Field(path, text)
    action: dict[str, Any] = {
        "exec": step.exec,
        "shell": step.shell,
        "get": step.get,
        "tool": step.tool.model_dump(by_alias=True) if step.tool else None,
        "put": step.put.model_dump(by_alias=True, exclude_none=True) if step.put else None,
        "agent": step.agent.model_dump(exclude_none=True) if step.agent else None,
        "env": step.env,
        "cwd": step.cwd,
        "stdin": step.stdin,
    }
    for key, value in action.items():
        for path, text in _strings(value, (*base, key)):
            yield _Field(path, text, item=looped)


def _assign_ids(steps: Sequence[Step], prefix: str) -> list[Step]:
    return [
        step if step.id is not None else step.model_copy(update={"id": f"{prefix}{index + 1}"})
        for index, step in enumerate(steps)
    ]


def _closure(steps: dict[str, Step]) -> dict[str, set[str]]:
    """Each step's transitive needs (assumes no cycle)."""
    memo: dict[str, set[str]] = {}

    def of(step_id: str) -> set[str]:
        if step_id not in memo:
            found: set[str] = set()
            for need in steps[step_id].needs:
                if need in steps:
                    found |= {need, *of(need)}
            memo[step_id] = found
        return memo[step_id]

    for step_id in steps:
        of(step_id)
    return memo


def _find_cycle(steps: dict[str, Step]) -> list[str] | None:
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(step_id: str) -> list[str] | None:
        state[step_id] = 1
        trail.append(step_id)
        for need in steps[step_id].needs:
            if need not in steps:
                continue
            if state.get(need) == 1:
                return [*trail[trail.index(need) :], need]
            if need not in state and (cycle := visit(need)) is not None:
                return cycle
        trail.pop()
        state[step_id] = 2
        return None

    for step_id in steps:
        if step_id not in state and (cycle := visit(step_id)) is not None:
            return cycle
    return None


class _Checker:
    def __init__(self, workflow: Workflow, source: SourceMap, steps_path: Path) -> None:
        self.workflow = workflow
        self.source = source
        self.steps_path = steps_path
        self.problems: list[Problem] = []

    def add(self, path: Path, message: str) -> None:
        self.problems.append(self.source.problem(path, message))

    def check_ref(
        self, ref: Ref, path: Path, *, item: bool, reachable: set[str] | None, owner: str | None
    ) -> None:
        kinds = {step.id: step for step in self.workflow.steps if step.id}
        if ref.root not in ROOTS:
            self.add(path, f"unknown name {ref.root!r} in {ref}; names are: {', '.join(ROOTS)}")
        elif ref.root == "item":
            if not item:
                self.add(path, "`item` is only defined in the action of a step with foreach")
        elif ref.root in ("vars", "secrets"):
            declared = self.workflow.vars if ref.root == "vars" else self.workflow.secrets
            if not ref.parts or not isinstance(ref.parts[0], str):
                self.add(path, f"{ref}: name the {ref.root[:-1]} ({ref.root}.NAME)")
            elif ref.parts[0] not in declared:
                names = ", ".join(sorted(declared)) or "none"
                self.add(
                    path,
                    f"unknown {'variable' if ref.root == 'vars' else 'secret'} {ref.parts[0]!r} "
                    f"in {ref}; declare it under {ref.root}: (declared: {names})",
                )
        else:
            self.check_step_ref(ref, path, kinds, reachable, owner)

    def check_step_ref(
        self,
        ref: Ref,
        path: Path,
        kinds: dict[str, Step],
        reachable: set[str] | None,
        owner: str | None,
    ) -> None:
        if not ref.parts or not isinstance(ref.parts[0], str):
            self.add(path, f"{ref}: name the step (steps.ID.FIELD)")
            return
        target_id = ref.parts[0]
        target = kinds.get(target_id)
        if target is None:
            self.add(path, f"{ref}: no step has the id {target_id!r}")
            return
        if target_id == owner:
            self.add(path, f"{ref}: a step cannot use its own outputs")
            return
        if reachable is not None and target_id not in reachable:
            self.add(
                path,
                f"{ref}: step {owner!r} does not need {target_id!r}, so its outputs may not "
                f"exist yet; add {target_id!r} to needs",
            )
            return
        if len(ref.parts) < 2:
            return
        field, rest = ref.parts[1], ref.parts[2:]
        allowed = set(COMMON_OUTPUTS)
        produced = OUTPUTS[target.action]
        if target.foreach is not None:
            allowed.add("results")
            if field in produced:
                self.add(
                    path,
                    f"{ref}: step {target_id!r} runs for each item; use "
                    f"steps.{target_id}.results[N].{field}",
                )
                return
            if field == "results" and len(rest) >= 2 and isinstance(rest[1], str):
                if rest[1] not in produced | COMMON_OUTPUTS:
                    self.add(path, self._unknown_field(ref, rest[1], target, produced))
                return
        else:
            allowed |= produced
        if not isinstance(field, str) or field not in allowed:
            self.add(path, self._unknown_field(ref, field, target, allowed))
        elif rest and field not in _DEEP:
            self.add(path, f"{ref}: {field} is a single value, it has no fields or items")

    @staticmethod
    def _unknown_field(
        ref: Ref, field: str | int, target: Step, allowed: set[str] | frozenset[str]
    ) -> str:
        return (
            f"{ref}: a {target.action} step has no output {field!r}; it has: "
            f"{', '.join(sorted(allowed | COMMON_OUTPUTS))}"
        )

    def check_template(
        self,
        field: _Field,
        *,
        reachable: set[str] | None,
        owner: str | None,
    ) -> None:
        try:
            if field.bare:
                refs = list(_refs_of_expression(field.text))
            else:
                refs = list(parse_template(field.text).refs())
        except TemplateError as exc:
            self.add(field.path, f"template does not parse: {exc}")
            return
        for ref in refs:
            self.check_ref(ref, field.path, item=field.item, reachable=reachable, owner=owner)


def _refs_of_expression(text: str) -> Iterator[Ref]:
    yield from refs_of(parse_expression(text))


def check_workflow(
    workflow: Workflow,
    source: SourceMap,
    *,
    steps_path: Path = ("steps",),
    outputs_path: Path = ("outputs",),
    id_prefix: str = "step-",
) -> Workflow:
    """The workflow with every step's id and session filled in; ``LoadError`` listing
    every problem otherwise."""
    workflow = workflow.model_copy(update={"steps": _assign_ids(workflow.steps, id_prefix)})
    checker = _Checker(workflow, source, steps_path)
    seen: dict[str, int] = {}
    sessions = list(workflow.sessions)
    steps: list[Step] = []
    for index, step in enumerate(workflow.steps):
        base = (*steps_path, index)
        assert step.id is not None
        if step.id in seen:
            checker.add((*base, "id"), f"duplicate id {step.id!r} (also steps[{seen[step.id]}])")
        seen.setdefault(step.id, index)
        if step.session is None:
            if len(sessions) != 1:
                checker.add(base, f"name the step's session, one of: {', '.join(sessions)}")
            else:
                step = step.model_copy(update={"session": sessions[0]})  # noqa: PLW2901
        elif step.session not in workflow.sessions:
            checker.add(
                (*base, "session"),
                f"unknown session {step.session!r}; sessions are: {', '.join(sessions)}",
            )
        for position, need in enumerate(step.needs):
            if need == step.id:
                checker.add((*base, "needs", position), "a step cannot need itself")
        steps.append(step)
    by_id = {step.id: step for step in steps if step.id is not None}
    for index, step in enumerate(steps):
        for position, need in enumerate(step.needs):
            if need not in by_id:
                checker.add(
                    (*steps_path, index, "needs", position),
                    f"unknown step {need!r}; steps are: {', '.join(by_id)}",
                )
    cycle = _find_cycle(by_id)
    if cycle is not None:
        first = next(i for i, step in enumerate(steps) if step.id == cycle[0])
        checker.add(
            (*steps_path, first, "needs"), f"the steps' needs form a cycle: {' -> '.join(cycle)}"
        )
    if checker.problems:
        raise LoadError(checker.problems)
    workflow = workflow.model_copy(update={"steps": steps})
    checker.workflow = workflow
    reachable = _closure(by_id)
    for index, step in enumerate(steps):
        assert step.id is not None
        for field in templated_fields(step, (*steps_path, index)):
            checker.check_template(field, reachable=reachable[step.id], owner=step.id)
    for path, text in _strings(workflow.outputs, outputs_path):
        checker.check_template(_Field(path, text), reachable=None, owner=None)
    if checker.problems:
        raise LoadError(checker.problems)
    return workflow
