"""Running a workflow: open its sessions, run its steps as a DAG, report what happened.

Every step is a task in one nursery that waits for the steps it ``needs``,
so independent steps run at once; their calls go through the router, which
keeps per-resource order inside a session.  A step is skipped when its
``if`` is false, when a step it needs failed with ``on_failure: fail``, or
when such a failure has already stopped the run (steps that are running
finish; no new one starts).  ``on_failure: continue`` records the failure
and lets the run go on.  ``retry`` tries an attempt again after
``backoff`` seconds, doubling; ``foreach`` runs the action once per item,
at most ``concurrency`` at a time, each item with its own retries.  Every
wait is bounded: a step's ``timeout`` bounds each attempt, the workflow's
``timeout`` the run.  Sessions the run opened are closed when it ends, and
by cancellation too.

Must not: import the runtime (``WorkflowHost`` is what it needs of it), or
report a secret value (everything leaving the run goes through the ``Masker``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import trio

from orchestrator.agent.loop import AgentHost
from orchestrator.config import Config
from orchestrator.errors import ConfigError, SbxError
from orchestrator.workflows.actions import ActionEnv, ClientFactory, Outcome, condition, render
from orchestrator.workflows.actions import run_action as _run_action
from orchestrator.workflows.loading import WorkflowSource, is_file, load_workflow
from orchestrator.workflows.masking import Masker
from orchestrator.workflows.model import MAX_FOREACH_ITEMS, RetrySpec, Step, Workflow
from orchestrator.workflows.results import StepResult, WorkflowEvent, WorkflowResult
from orchestrator.workflows.step_tools import step_tools
from orchestrator.workflows.template import Lazy, TemplateError

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["EventSink", "WorkflowError", "WorkflowHost", "run_workflow"]

log = structlog.get_logger("orchestrator.workflows")

EventSink = Callable[[WorkflowEvent], Awaitable[None]]
DEFAULT_CONCURRENCY = 8
_HOST_MARGIN = 10.0


class WorkflowError(ConfigError):
    """The run cannot start as asked: an unknown ``--var``, a secret that is not set."""


class WorkflowHost(AgentHost, Protocol):
    """What a run needs of the runtime: sessions, the router, the configuration.

    ``Orchestrator`` is one; this package never imports it.
    """

    config: Config


def _plain(value: Any) -> Any:
    """Outputs as plain data: a ``json`` not computed yet is computed, or ``None``."""
    if isinstance(value, Lazy):
        try:
            return _plain(value.get())
        except TemplateError:
            return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _reported(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """A step's outputs for reports: ``json`` is left out (it is ``stdout``, parsed)."""
    return {key: value for key, value in outputs.items() if not isinstance(value, Lazy)}


def _load(source: WorkflowSource) -> tuple[Workflow, Path | None]:
    """The checked workflow, and the folder of its file if it came from one (in a thread)."""
    workflow = load_workflow(source)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and is_file(source)):
        return workflow, Path(source).resolve().parent
    return workflow, None


def resolve_vars(workflow: Workflow, given: Mapping[str, Any] | None) -> dict[str, Any]:
    values = dict(workflow.vars)
    for name, value in (given or {}).items():
        if name not in values:
            declared = ", ".join(sorted(workflow.vars)) or "none"
            raise WorkflowError(
                f"--var {name}: the workflow declares no such variable (declared: {declared}); "
                "add it under vars: with a default"
            )
        values[name] = value
    return values


def resolve_secrets(
    workflow: Workflow, given: Mapping[str, str] | None, environ: Mapping[str, str] | None
) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, spec in workflow.secrets.items():
        if given is not None and name in given:
            values[name] = given[name]
        elif environ is not None and spec.env in environ:
            values[name] = environ[spec.env]
        else:
            where = f"set {spec.env} in the environment" if environ is not None else "pass it"
            raise WorkflowError(f"secret {name!r} has no value: {where}")
    unknown = sorted(set(given or {}) - set(workflow.secrets))
    if unknown:
        raise WorkflowError(f"secrets {', '.join(unknown)} are not declared under secrets:")
    return values


class _Run:
    def __init__(
        self,
        workflow: Workflow,
        env: ActionEnv,
        masker: Masker,
        variables: dict[str, Any],
        secrets: dict[str, str],
        on_event: EventSink | None,
    ) -> None:
        self.workflow = workflow
        self.env = env
        self.masker = masker
        self.vars = variables
        self.secrets = secrets
        self.on_event = on_event
        self.results = {
            step.id or "": StepResult(step.id or "", action=step.action) for step in workflow.steps
        }
        self.done = {step.id or "": trio.Event() for step in workflow.steps}
        self.published: dict[str, dict[str, Any]] = {}
        self.raw: dict[tuple[str, int | None], dict[str, Any]] = {}
        """Each attempt's outputs as they were, unmasked, for later steps' templates."""
        self.halted: str | None = None

    def context(self, item: Any = None) -> dict[str, Any]:
        return {"vars": self.vars, "secrets": self.secrets, "steps": self.published, "item": item}

    async def emit(self, event: WorkflowEvent) -> None:
        if self.on_event is not None:
            await self.on_event(event)

    async def run(self) -> str | None:
        """Run every step; the reason if the workflow's timeout cut it short."""
        timeout = self.workflow.timeout or math.inf
        with trio.move_on_after(timeout) as scope:
            async with trio.open_nursery() as nursery:
                for step in self.workflow.steps:
                    nursery.start_soon(self.step_task, step)
        if scope.cancelled_caught:
            reason = f"the workflow did not finish within its timeout ({timeout:g} s)"
            for result in self.results.values():
                if result.status in ("pending", "running", "cancelled"):
                    result.status, result.reason = "cancelled", reason
            return reason
        return None

    async def step_task(self, step: Step) -> None:
        assert step.id is not None
        for need in step.needs:
            await self.done[need].wait()
        result = self.results[step.id]
        try:
            blocker = next(
                (
                    need
                    for need in step.needs
                    if self.results[need].status in ("failed", "cancelled")
                    and self._policy(need) == "fail"
                ),
                None,
            )
            if blocker is not None:
                await self.skip(result, f"it needs {blocker}, which failed")
            elif self.halted is not None:
                await self.skip(result, f"not started: {self.halted}")
            elif step.if_ is not None and not condition(step.if_, self.context()):
                await self.skip(result, "its if: was false")
            else:
                await self.execute(step, result)
        except TemplateError as exc:
            result.status = "failed"
            result.error = self.masker.text(f"if: {exc}")
            await self.finished(step, result, None)
        except BaseException:
            result.status = "cancelled"
            result.reason = "the run was cancelled"
            raise
        finally:
            if result.status == "failed" and step.on_failure == "fail" and self.halted is None:
                self.halted = f"step {step.id} failed"
            self.publish(step, result)
            self.done[step.id].set()

    def _policy(self, step_id: str) -> str:
        return next(s.on_failure for s in self.workflow.steps if s.id == step_id)

    async def skip(self, result: StepResult, reason: str) -> None:
        result.status = "skipped"
        result.reason = reason
        await self.emit(WorkflowEvent("step_finished", result.id, status="skipped", reason=reason))

    def publish(self, step: Step, result: StepResult) -> None:
        entry: dict[str, Any] = {
            "status": result.status,
            "seconds": round(result.seconds, 3),
            "attempts": result.attempts,
            "error": result.error,
        }
        entry.update(self.raw.get((result.id, None), {}))
        if result.items is not None:
            entry["results"] = [
                {"status": item.status, "error": item.error, **self.raw.get((result.id, i), {})}
                for i, item in enumerate(result.items)
            ]
        self.published[result.id] = entry

    async def execute(self, step: Step, result: StepResult) -> None:
        result.status = "running"
        started = time.perf_counter()
        if step.foreach is None:
            await self.attempts(step, result, None, None)
        else:
            await self.fan_out(step, result)
        result.seconds = time.perf_counter() - started
        await self.finished(step, result, None)

    async def finished(self, step: Step, result: StepResult, index: int | None) -> None:
        exit_code = result.outputs.get("exit_code")
        await self.emit(
            WorkflowEvent(
                "step_finished",
                result.id,
                index=index,
                attempt=max(result.attempts, 1),
                status=result.status,
                seconds=result.seconds,
                exit_code=exit_code if isinstance(exit_code, int) else None,
                error=result.error,
            )
        )

    async def fan_out(self, step: Step, result: StepResult) -> None:
        try:
            items = render(step.foreach, self.context())
        except TemplateError as exc:
            result.status, result.error = "failed", self.masker.text(f"foreach: {exc}")
            return
        if not isinstance(items, list):
            result.status = "failed"
            result.error = f"foreach must give a list, got {type(items).__name__}"
            return
        if len(items) > MAX_FOREACH_ITEMS:
            result.status = "failed"
            result.error = f"foreach gave {len(items)} items, over {MAX_FOREACH_ITEMS}"
            return
        await self.emit(
            WorkflowEvent("step_started", result.id, detail=f"for each of {len(items)} items")
        )
        entries = [
            StepResult(result.id, action=step.action, item=self.masker.mask(item)) for item in items
        ]
        result.items = entries
        limiter = trio.CapacityLimiter(step.concurrency or DEFAULT_CONCURRENCY)

        async def one(index: int, item: Any) -> None:
            async with limiter:
                started = time.perf_counter()
                await self.attempts(step, entries[index], item, index)
                entries[index].seconds = time.perf_counter() - started
                await self.finished(step, entries[index], index)

        async with trio.open_nursery() as nursery:
            for index, item in enumerate(items):
                nursery.start_soon(one, index, item)
        failed = [entry for entry in entries if entry.status != "succeeded"]
        result.attempts = max((entry.attempts for entry in entries), default=0)
        if failed:
            result.status = "failed"
            result.error = f"{len(failed)} of {len(entries)} items failed; first: {failed[0].error}"
        else:
            result.status = "succeeded"

    def _deadline(self, step: Step) -> float:
        if step.timeout is None:
            return math.inf
        if step.action in ("exec", "shell"):  # the sandbox enforces it; this bounds the wait
            return step.timeout + self.env.config.session.kill_grace + _HOST_MARGIN
        return step.timeout

    async def attempts(self, step: Step, result: StepResult, item: Any, index: int | None) -> None:
        retry = step.retry or RetrySpec()
        context = self.context(item)
        outcome = Outcome(False, error="not run")
        for attempt in range(1, retry.attempts + 1):
            result.attempts = attempt
            await self.emit(WorkflowEvent("step_started", result.id, index=index, attempt=attempt))
            with trio.move_on_after(self._deadline(step)) as scope:
                outcome = await _run_action(self.env, step, context)
            if scope.cancelled_caught:
                outcome = Outcome(
                    False, error=f"did not finish within its timeout ({step.timeout:g} s)"
                )
            if outcome.ok or not outcome.retryable or attempt == retry.attempts:
                break
            delay = retry.delay(attempt)
            await self.emit(
                WorkflowEvent(
                    "step_retry",
                    result.id,
                    index=index,
                    attempt=attempt,
                    error=self.masker.text(outcome.error or "failed"),
                    detail=f"next attempt in {delay:g} s",
                )
            )
            await trio.sleep(delay)
        result.status = "succeeded" if outcome.ok else "failed"
        result.error = self.masker.text(outcome.error) if outcome.error else None
        result.outputs = self.masker.mask(_reported(outcome.outputs))
        result.details = self.masker.mask(outcome.details)
        self.raw[(result.id, index)] = outcome.outputs
        result.files = {path: self.masker.mask(data) for path, data in outcome.files.items()}

    def outputs(self) -> tuple[dict[str, Any], str | None]:
        values: dict[str, Any] = {}
        problems: list[str] = []
        context = self.context()
        for name, template in self.workflow.outputs.items():
            try:
                values[name] = _plain(render(template, context))
            except TemplateError as exc:
                values[name] = None
                problems.append(f"outputs.{name}: {exc}")
        return self.masker.mask(values), self.masker.text("; ".join(problems)) or None


async def run_workflow(
    host: WorkflowHost,
    source: WorkflowSource,
    *,
    vars: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    sessions: Mapping[str, Session] | None = None,
    owner: str | None = None,
    on_event: EventSink | None = None,
    run_root: Path | str = "runs",
    base_dir: Path | None = None,
    allow_local_files: bool = True,
    environ: Mapping[str, str] | None = os.environ,
    agent_client: ClientFactory | None = None,
) -> WorkflowResult:
    """Run a workflow (a path, YAML text, data or a ``Workflow``) to its end.

    ``vars`` override the declared variables; ``secrets`` give secret values
    (else they come from ``environ``; ``None`` forbids that).  ``sessions``
    binds session names to live sessions the caller keeps; the others are
    opened here (for ``owner``) and closed at the end.  ``on_event`` is
    awaited with each step event.  ``LoadError`` (a ``ConfigError``) for a
    workflow that does not load, ``WorkflowError`` for one that cannot start.
    """
    workflow, folder = await trio.to_thread.run_sync(_load, source)
    base_dir = base_dir or folder
    variables = resolve_vars(workflow, vars)
    secret_values = resolve_secrets(workflow, secrets, environ)
    masker = Masker(secret_values.values())
    router = host.router.with_tools(step_tools(host.config.session.exec_timeout))
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        opened: dict[str, Session] = dict(sessions or {})
        env = ActionEnv(
            host,
            router,
            opened,
            host.config,
            Path(run_root),
            base_dir=base_dir,
            allow_local_files=allow_local_files,
            agent_client=agent_client,
            masker=masker,
        )
        run = _Run(workflow, env, masker, variables, secret_values, on_event)
        try:
            for name, options in workflow.sessions.items():
                if name not in opened:
                    kwargs = options.model_dump(exclude_defaults=True)
                    if owner is not None:
                        kwargs["owner"] = owner
                    opened[name] = await stack.enter_async_context(host.session(**kwargs))
        except SbxError as exc:
            for result in run.results.values():
                result.status, result.reason = "skipped", "the sessions did not start"
            message = masker.text(f"session {name!r} did not start: {exc}")
            return WorkflowResult(
                False, {}, run.results, time.perf_counter() - started, workflow.name, message
            )
        log.info("workflow started", name=workflow.name, steps=len(workflow.steps))
        timed_out = await run.run()
        outputs, problem = run.outputs()
    results = run.results
    failed = [
        r.id
        for s, r in zip(workflow.steps, results.values(), strict=True)
        if r.status in ("failed", "cancelled") and s.on_failure == "fail"
    ]
    error: str | None = timed_out or problem
    ok = not failed and error is None
    seconds = time.perf_counter() - started
    log.info("workflow finished", name=workflow.name, ok=ok, seconds=round(seconds, 3))
    return WorkflowResult(ok, outputs, results, seconds, workflow.name, error)
