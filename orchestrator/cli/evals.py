"""``sbx eval SUITE.yaml``: run an evaluation suite, show its progress, write its reports.

Every trial gets a fresh sandbox; up to ``--concurrency`` run at once.  The
run directory (``--out``, default ``evals/NAME-TIME``) keeps each result as
it comes and the reports; ``--resume DIR`` skips what finished there.
Ctrl-C removes every sandbox, writes the reports of what finished and says
how to resume.  Exit status: 0 all passed, 1 some did not, 2 a suite that
does not load, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from orchestrator.config import Config
from orchestrator.errors import ConfigError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "eval",
        help="run an evaluation suite (tasks in fresh sandboxes, graders, reports)",
        description="Run SUITE.yaml: each task and epoch in a fresh sandbox, graded inside it. "
        "Exit 0 if all passed, 1 if some did not, 2 if the suite does not load.",
    )
    run.add_argument("suite", metavar="SUITE.yaml", help="the evaluation suite to run")
    run.add_argument(
        "--concurrency",
        "-j",
        type=int,
        default=4,
        metavar="N",
        help="trials at once (default 4; never over session.max_sessions)",
    )
    run.add_argument("--junit", type=Path, metavar="F", help="write a JUnit XML report")
    run.add_argument("--json", type=Path, metavar="F", help="write a JSON report")
    run.add_argument("--html", type=Path, metavar="F", help="write a self-contained HTML report")
    run.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    run.add_argument(
        "--filter",
        metavar="PATTERN",
        help="only tasks whose id matches (a glob, or a part of the id)",
    )
    run.add_argument(
        "--out", type=Path, metavar="DIR", help="the run directory (default evals/NAME-TIME)"
    )
    run.set_defaults(handler=_handle, quiet_logs=True)


def _handle(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.evals.loading import load_suite
    from orchestrator.evals.run_dir import EvalRunDir
    from orchestrator.evals.runner import planned_trials

    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {args.concurrency}")
    loaded = load_suite(args.suite)
    if not planned_trials(loaded, args.filter):
        ids = ", ".join(task.id for task in loaded.tasks)
        raise ConfigError(
            f"no task of {loaded.name} matches --filter {args.filter!r} (tasks: {ids})"
        )
    if any(planned.model is not None or planned.task.solve is None for planned in loaded.tasks):
        from orchestrator.agent.loop import AgentError, resolve_api_key

        try:
            resolve_api_key(None)  # before any sandbox starts
        except AgentError as exc:
            raise ConfigError(f"{loaded.name} has tasks Claude solves: {exc}") from None
    if args.resume is not None:
        run_dir = EvalRunDir.resume(args.resume, loaded.name)
    elif args.out is not None:
        run_dir = EvalRunDir(args.out)
    else:
        run_dir = EvalRunDir.create(Path("evals"), loaded.name)
    print(f"run directory: {run_dir.path}", file=sys.stderr, flush=True)
    return trio.run(_run, config, args, loaded, run_dir)


async def _run(config: Config, args: argparse.Namespace, loaded: object, run_dir: object) -> int:
    from orchestrator.evals.loading import LoadedSuite
    from orchestrator.evals.progress import make_progress
    from orchestrator.evals.reports import write_reports
    from orchestrator.evals.results import SuiteResult
    from orchestrator.evals.run_dir import EvalRunDir
    from orchestrator.evals.runner import planned_trials, run_suite
    from orchestrator.runtime import Orchestrator

    assert isinstance(loaded, LoadedSuite)
    assert isinstance(run_dir, EvalRunDir)
    progress = make_progress()
    orch = Orchestrator(config.model_copy(update={"reap_orphans": False}), handle_signals=True)
    result: SuiteResult | None = None
    try:
        async with orch, trio.open_nursery() as nursery:
            nursery.start_soon(progress.tick)
            result = await run_suite(
                orch,
                loaded,
                run_dir,
                concurrency=args.concurrency,
                pattern=args.filter,
                progress=progress,
                stopping=lambda: orch.signalled is not None,
            )
            nursery.cancel_scope.cancel()
    finally:
        progress.close()
    interrupted = result is None or orch.signalled is not None
    if result is None:
        trials = planned_trials(loaded, args.filter)
        done = run_dir.finished({p.id: p.digest for p in loaded.tasks})
        result = SuiteResult(
            name=loaded.name,
            trials=[done[(p.id, e)] for p, e in trials if (p.id, e) in done],
            started=run_dir.started,
            run_dir=str(run_dir.path),
            planned=len(trials),
        )
    result.interrupted = interrupted
    write_reports(
        result,
        json_path=run_dir.path / "report.json",
        junit_path=run_dir.path / "junit.xml",
        html_path=run_dir.path / "report.html",
    )
    write_reports(result, json_path=args.json, junit_path=args.junit, html_path=args.html)
    summary = result.summary()
    print(
        f"{loaded.name}: {summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['timeout']} timed out, {summary['error']} errors "
        f"({summary['total']} of {summary['planned']} trials) in {result.seconds:.1f} s; "
        f"reports in {run_dir.path}"
    )
    if interrupted:
        print(
            f"sbx: interrupted; every sandbox was removed. Resume with: "
            f"sbx eval {args.suite} --resume {run_dir.path}",
            file=sys.stderr,
        )
        return 130
    return 0 if result.ok else 1
