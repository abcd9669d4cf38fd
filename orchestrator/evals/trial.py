"""One trial: a task in one epoch, in a fresh sandbox of its own, from files to grades.

The sandbox is opened for the trial and removed when it ends, however it
ends.  Files go in, ``setup`` runs (a failing command is an ``error``), then
the solver -- a workflow bound to the trial's session, through the router
like every workflow -- all under the task's ``timeout`` (past it the trial
is a ``timeout`` and is not graded).  Then an optional screenshot, and the
graders, in the same sandbox.

Must not: write the run directory's results (the runner does), or grade on the host.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from orchestrator.errors import SbxError
from orchestrator.evals.graders import Solved, run_graders
from orchestrator.evals.loading import LoadedSuite, PlannedTask
from orchestrator.evals.model import FileFrom
from orchestrator.evals.prices import trial_cost
from orchestrator.evals.results import TrialResult
from orchestrator.evals.run_dir import EvalRunDir
from orchestrator.workflows.results import StepResult, WorkflowResult
from orchestrator.workflows.runner import EventSink, WorkflowHost, run_workflow

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["run_trial", "solved_from"]

log = structlog.get_logger("orchestrator.evals")


def _exit_code(step: StepResult) -> int:
    value = step.outputs.get("exit_code")
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value or step.status == "succeeded" else 1
    return 0 if step.status == "succeeded" else 1


def solved_from(result: WorkflowResult) -> Solved:
    """The solver's exit code (its first failed step's, else its last step's) and output."""
    ran = [step for step in result.steps.values() if step.status in ("succeeded", "failed")]
    failed = next((step for step in ran if step.status == "failed"), None)
    if failed is not None:
        code = _exit_code(failed)
    elif ran:
        code = _exit_code(ran[-1])
    else:
        code = 0 if result.ok else 1
    last = failed or (ran[-1] if ran else None)
    output = ""
    if last is not None:
        value = last.outputs.get("stdout", last.outputs.get("text", ""))
        output = value if isinstance(value, str) else ""
    return Solved(code, output)


async def _put_files(session: Session, loaded: LoadedSuite, planned: PlannedTask) -> None:
    for path, content in planned.task.files.items():
        if isinstance(content, FileFrom):
            data = await trio.Path(loaded.base_dir / content.from_).read_bytes()
        else:
            data = content.encode("utf-8")
        await session.write_file(path, data)


async def _setup(session: Session, planned: PlannedTask) -> str | None:
    """The first setup command that failed, and how; ``None`` when all succeeded."""
    for index, command in enumerate(planned.task.setup):
        result = await session.exec(command, timeout=planned.timeout)
        if not result.ok:
            said = (result.stderr_text or result.stdout_text).strip()[-500:]
            how = "timed out" if result.timed_out else f"exited {result.exit_code}"
            return f"setup[{index}] `{command}` {how}" + (f": {said}" if said else "")
    return None


def _usage(
    trial: TrialResult, solve: WorkflowResult, planned: PlannedTask, loaded: LoadedSuite
) -> None:
    step_costs: list[float | None] = []
    for step in solve.steps.values():
        if step.action != "agent":
            continue
        trial.input_tokens += int(step.outputs.get("input_tokens") or 0)
        trial.output_tokens += int(step.outputs.get("output_tokens") or 0)
        trial.model = str(step.details.get("model") or planned.model or "") or None
        cost = step.outputs.get("cost_usd")
        step_costs.append(float(cost) if isinstance(cost, int | float) else None)
    if trial.model is not None:
        prices = {prefix: (p.input, p.output) for prefix, p in loaded.suite.prices.items()}
        trial.cost_usd = trial_cost(
            trial.model, trial.input_tokens, trial.output_tokens, step_costs, prices
        )


async def _screenshot(session: Session, folder: Path) -> Path | None:
    try:
        png = await session.screenshot()
    except SbxError as exc:
        log.warning("no screenshot", session_id=session.id, error=str(exc))
        return None
    path = folder / "screenshot.png"
    await trio.Path(folder).mkdir(parents=True, exist_ok=True)
    await trio.Path(path).write_bytes(png)
    return path


async def _solve_and_grade(
    host: WorkflowHost,
    session: Session,
    loaded: LoadedSuite,
    planned: PlannedTask,
    trial: TrialResult,
    folder: Path,
    on_event: EventSink | None,
) -> WorkflowResult | None:
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        trial.timings[name] = round(now - mark, 3)
        mark = now

    solve: WorkflowResult | None = None
    with trio.move_on_after(planned.timeout) as scope:
        await _put_files(session, loaded, planned)
        lap("files")
        problem = await _setup(session, planned)
        lap("setup")
        if problem is not None:
            trial.status, trial.message = "error", problem
            return None
        solve = await run_workflow(
            host,
            planned.solve,
            sessions={"main": session},
            run_root=folder / "agent",
            base_dir=loaded.base_dir,
            on_event=on_event,
        )
        lap("solve")
    if scope.cancelled_caught:
        trial.status = "timeout"
        trial.message = f"setup and solving did not finish within {planned.timeout:g} s"
        return solve
    assert solve is not None
    unreachable = [
        step
        for step in solve.steps.values()
        if step.action == "agent" and step.status == "failed" and "stop_reason" not in step.outputs
    ]
    if unreachable:  # Claude could not be asked (no key, the API failed): not the solver's fault
        trial.status, trial.message = "error", unreachable[0].error or "the agent could not run"
        return solve
    if planned.task.screenshot:
        await _screenshot(session, folder)
    trial.graders = await run_graders(session, planned.task.graders, solved_from(solve))
    lap("graders")
    if any(grader.error for grader in trial.graders):
        trial.status = "error"
    else:
        trial.status = "passed" if all(g.passed for g in trial.graders) else "failed"
    failing = [g for g in trial.graders if not g.passed]
    trial.message = "; ".join(f"{g.name}: {g.message}" for g in failing)
    return solve


async def run_trial(
    host: WorkflowHost,
    loaded: LoadedSuite,
    planned: PlannedTask,
    epoch: int,
    run_dir: EvalRunDir,
    *,
    on_event: EventSink | None = None,
) -> TrialResult:
    """Run ``planned`` once (epoch ``epoch``) in a fresh sandbox; its result, whatever happened."""
    trial = TrialResult(
        task=planned.id,
        epoch=epoch,
        digest=planned.digest,
        epochs=planned.epochs,
        model=planned.model,
    )
    folder = run_dir.trial_dir(planned.id, epoch)
    started = time.perf_counter()
    solve: WorkflowResult | None = None
    try:
        async with host.session(**planned.options) as session:
            trial.session_id = session.id
            trial.timings["start"] = round(time.perf_counter() - started, 3)
            solve = await _solve_and_grade(host, session, loaded, planned, trial, folder, on_event)
    except SbxError as exc:
        trial.status, trial.message = "error", f"{type(exc).__name__}: {exc}"
    except OSError as exc:
        trial.status, trial.message = "error", f"cannot read a file of the task: {exc}"
    trial.seconds = round(time.perf_counter() - started, 3)
    if solve is not None:
        trial.solve = solve.to_json()
        _usage(trial, solve, planned, loaded)
    await trio.to_thread.run_sync(_collect_files, trial, folder, run_dir)
    return trial


def _collect_files(trial: TrialResult, folder: Path, run_dir: EvalRunDir) -> None:
    if not folder.exists():
        return
    trial.transcripts = sorted(run_dir.relative(p) for p in folder.rglob("transcript.jsonl"))
    trial.screenshots = sorted(run_dir.relative(p) for p in folder.rglob("*.png"))
