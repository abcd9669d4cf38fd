"""Running a suite: every task in every epoch, each in a fresh sandbox, a few at a time.

Trials start in the suite's order, at most ``concurrency`` at once (and
never more than ``session.max_sessions``); each result is written to the
run directory as soon as it is known, so an interrupted run loses only the
trials in flight, and ``--resume`` skips what finished.  A trial cut short
by Ctrl-C (``stopping()`` says so) is not recorded: it runs again on resume.

Must not: import the runtime (``WorkflowHost`` is what it needs), print, or
write reports (``progress`` and the report modules do).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Protocol

import trio

from orchestrator.evals.loading import LoadedSuite, PlannedTask
from orchestrator.evals.results import SuiteResult, TrialResult
from orchestrator.evals.run_dir import EvalRunDir
from orchestrator.evals.trial import run_trial
from orchestrator.workflows.runner import WorkflowHost

__all__ = ["Progress", "matches", "planned_trials", "run_suite"]


class Progress(Protocol):
    """Told what happens, for a live view or plain lines."""

    def begin(self, total: int, skipped: int) -> None: ...

    def started(self, task: str, epoch: int) -> None: ...

    def finished(self, trial: TrialResult) -> None: ...


def matches(task_id: str, pattern: str | None) -> bool:
    """``--filter``: a glob (``add*``) on the task id, or a part of it (``add``)."""
    if not pattern:
        return True
    if any(char in pattern for char in "*?["):
        return fnmatch.fnmatchcase(task_id, pattern)
    return pattern in task_id


def planned_trials(loaded: LoadedSuite, pattern: str | None) -> list[tuple[PlannedTask, int]]:
    return [
        (planned, epoch)
        for planned in loaded.tasks
        if matches(planned.id, pattern)
        for epoch in range(1, planned.epochs + 1)
    ]


async def run_suite(
    host: WorkflowHost,
    loaded: LoadedSuite,
    run_dir: EvalRunDir,
    *,
    concurrency: int = 4,
    pattern: str | None = None,
    progress: Progress | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> SuiteResult:
    """Run the suite's trials that have not finished in ``run_dir`` yet; all their results."""
    trials = planned_trials(loaded, pattern)
    digests = {planned.id: planned.digest for planned in loaded.tasks}
    done = run_dir.finished(digests)
    results: dict[tuple[str, int], TrialResult] = {
        (planned.id, epoch): done[(planned.id, epoch)]
        for planned, epoch in trials
        if (planned.id, epoch) in done
    }
    todo = [(planned, epoch) for planned, epoch in trials if (planned.id, epoch) not in results]
    run_dir.begin(loaded.name, loaded.file)
    if progress is not None:
        progress.begin(len(trials), len(results))
    limit = max(1, min(concurrency, host.config.session.max_sessions))
    slots = trio.Semaphore(limit)
    started = time.perf_counter()

    async def one(planned: PlannedTask, epoch: int) -> None:
        try:
            if progress is not None:
                progress.started(planned.id, epoch)
            trial = await run_trial(host, loaded, planned, epoch, run_dir)
            if stopping():
                return
            run_dir.record(trial)
            results[trial.key] = trial
            if progress is not None:
                progress.finished(trial)
        finally:
            slots.release()

    try:
        async with trio.open_nursery() as nursery:
            for planned, epoch in todo:
                await slots.acquire()  # trials start in the suite's order, a slot each
                nursery.start_soon(one, planned, epoch)
    finally:
        run_dir.close()
    ordered = [results[(p.id, e)] for p, e in trials if (p.id, e) in results]
    return SuiteResult(
        name=loaded.name,
        trials=ordered,
        seconds=round(time.perf_counter() - started, 3),
        started=run_dir.started,
        run_dir=str(run_dir.path),
        planned=len(trials),
    )
