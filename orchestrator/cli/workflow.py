"""``sbx workflow run|check|schema``: YAML workflows from the command line.

``run`` prints a line per step as it goes (stderr) and the outputs at the
end (stdout), or with ``--json`` only the result document; ``--out DIR``
keeps that document, the files ``get`` steps read back and agent
transcripts.  Exit status: 0 when every step that had to succeed did, 1
otherwise, 2 for a file that does not load (or ``--var`` it does not
declare), 130 on Ctrl-C (every sandbox removed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.config import Config

if TYPE_CHECKING:
    from orchestrator.workflows.results import WorkflowEvent, WorkflowResult

__all__ = ["parse_var", "register", "save_files"]


def parse_var(text: str) -> tuple[str, Any]:
    """``K=V``; ``V`` is JSON when it parses as JSON (``3``, ``true``, ``[1,2]``), else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--var needs NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("workflow", help="run YAML workflows (chains of tool calls)")
    group.set_defaults(group_parser=group)
    actions = group.add_subparsers(dest="workflow_command", metavar="ACTION")

    run = actions.add_parser(
        "run",
        help="run a workflow file",
        description="Run FILE.yaml: its sessions, its steps as a DAG, then its outputs. Exit "
        "0 if every step that had to succeed did, 1 if not, 2 if the file does not load.",
    )
    run.add_argument("file", metavar="FILE.yaml", help="the workflow to run")
    run.add_argument(
        "--var",
        type=parse_var,
        action="append",
        default=[],
        metavar="K=V",
        help="set a declared variable (V is JSON if it parses, else text; repeatable)",
    )
    run.add_argument("--json", action="store_true", help="print only the result as JSON")
    run.add_argument("--out", type=Path, metavar="DIR", help="keep the result and files here")
    run.set_defaults(handler=_run, quiet_logs=True)

    check = actions.add_parser("check", help="load and check a workflow file, run nothing")
    check.add_argument("file", metavar="FILE.yaml", help="the workflow to check")
    check.set_defaults(handler=_check)

    schema = actions.add_parser("schema", help="print the JSON Schema of workflow files")
    schema.add_argument(
        "--suite", action="store_true", help="the schema of evaluation suites instead"
    )
    schema.set_defaults(handler=_schema)


def _schema(args: argparse.Namespace, config: Config) -> int:
    if args.suite:
        from orchestrator.evals.model import suite_schema

        print(json.dumps(suite_schema(), indent=2))
    else:
        from orchestrator.workflows.schema import json_schema

        print(json.dumps(json_schema(), indent=2))
    return 0


def _check(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.workflows.loading import load_workflow

    workflow = load_workflow(Path(args.file))
    print(f"{args.file}: ok, {len(workflow.steps)} steps, sessions {', '.join(workflow.sessions)}")
    return 0


def _progress(event: WorkflowEvent) -> None:
    where = event.step if event.index is None else f"{event.step}[{event.index}]"
    if event.kind == "step_started":
        line = f"▶ {where}" + (f" (attempt {event.attempt})" if event.attempt > 1 else "")
        line += f" {event.detail}" if event.detail else ""
    elif event.kind == "step_retry":
        line = f"↻ {where} failed ({event.error}); {event.detail}"
    elif event.status == "skipped":
        line = f"- {where} skipped: {event.reason}"
    elif event.status == "succeeded":
        line = f"✓ {where} {event.seconds:.2f} s"
    else:
        line = f"✗ {where} {event.status} after {event.seconds:.2f} s: {event.error}"
    print(line, file=sys.stderr, flush=True)


def save_files(result: WorkflowResult, folder: Path) -> list[Path]:
    """Each ``get`` step's files under ``folder/STEP/`` at their sandbox path."""
    saved: list[Path] = []
    for step in result.steps.values():
        entries = step.items if step.items is not None else [step]
        for index, entry in enumerate(entries):
            for path, data in entry.files.items():
                parts = [p for p in PurePosixPath(path).parts if p not in ("/", "..", ".")]
                name = step.id if step.items is None else f"{step.id}-{index}"
                target = folder / name / Path(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                saved.append(target)
    return saved


async def _run_workflow(config: Config, args: argparse.Namespace) -> WorkflowResult | None:
    """The result; ``None`` when a signal stopped the run."""
    from orchestrator.runtime import Orchestrator

    out: Path | None = args.out

    async def on_event(event: WorkflowEvent) -> None:
        if not args.json:
            _progress(event)

    orch = Orchestrator(config.model_copy(update={"reap_orphans": False}), handle_signals=True)
    result: WorkflowResult | None = None
    async with orch:
        result = await orch.workflow(
            Path(args.file),
            vars=dict(args.var),
            on_event=on_event,
            run_root=(out / "runs") if out is not None else "runs",
        )
    return None if orch.signalled is not None else result


def _run(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.workflows.loading import load_workflow
    from orchestrator.workflows.template import to_text

    load_workflow(Path(args.file))  # a file that does not load is exit 2 before any sandbox
    result = trio.run(_run_workflow, config, args)
    if result is None:
        print("sbx: interrupted; every sandbox was removed", file=sys.stderr)
        return 130
    out: Path | None = args.out
    document = result.to_json()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "workflow.json").write_text(json.dumps(document, indent=2) + "\n")
        save_files(result, out / "files")
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        if result.error:
            print(f"✗ {result.error}", file=sys.stderr)
        for name, value in result.outputs.items():
            print(f"{name}: {to_text(value)}")
        verdict = "ok" if result.ok else "FAILED"
        print(f"[{verdict} in {result.seconds:.2f} s]", file=sys.stderr)
    return 0 if result.ok else 1
