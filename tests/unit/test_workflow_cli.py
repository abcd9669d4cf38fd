"""``sbx workflow`` and ``sbx eval`` parsing, schemas and exit status 2 (no engine needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli import main
from orchestrator.cli.workflow import parse_var
from orchestrator.evals.progress import LiveProgress, PlainProgress
from orchestrator.evals.results import TrialResult


def test_vars_are_json_when_they_parse() -> None:
    assert parse_var("n=5") == ("n", 5)
    assert parse_var("flag=true") == ("flag", True)
    assert parse_var("items=[1, 2]") == ("items", [1, 2])
    assert parse_var("name=hello world") == ("name", "hello world")
    assert parse_var("empty=") == ("empty", "")


def test_the_schemas_print_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflow", "schema"]) == 0
    workflow = json.loads(capsys.readouterr().out)
    assert workflow["title"] == "sbx workflow"
    assert main(["workflow", "schema", "--suite"]) == 0
    suite = json.loads(capsys.readouterr().out)
    assert suite["title"] == "sbx evaluation suite"


def test_a_file_that_does_not_load_exits_2_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("steps:\n  - id: a\n    exec: 'echo ${{ vars.x }}'\n")
    assert main(["workflow", "run", str(flow)]) == 2
    err = capsys.readouterr().err
    assert f"{flow}:3: steps[0].exec: unknown variable 'x'" in err
    assert "Traceback" not in err
    assert main(["workflow", "check", str(flow)]) == 2
    flow.write_text("steps:\n  - id: a\n    exec: 'true'\n")
    assert main(["workflow", "check", str(flow)]) == 0
    assert "ok, 1 steps" in capsys.readouterr().out


def test_a_suite_that_does_not_load_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ntasks:\n  - id: a\n    graders: [{type: exit_code}]\n")
    assert main(["eval", str(suite)]) == 2
    assert f"{suite}:3: tasks[0]: give a solver" in capsys.readouterr().err
    suite.write_text(
        "name: s\ntasks:\n  - {id: a, solve: [{exec: 'true'}], graders: [{type: exit_code}]}\n"
    )
    assert main(["eval", str(suite), "--filter", "zzz"]) == 2
    assert "no task of s matches --filter 'zzz' (tasks: a)" in capsys.readouterr().err
    assert main(["eval", str(suite), "--resume", str(tmp_path)]) == 2
    assert "not an evaluation run directory" in capsys.readouterr().err


def _trial(status: str) -> TrialResult:
    return TrialResult(task=f"task-{status}", epoch=1, status=status, message="why", seconds=1.5)  # type: ignore[arg-type]


def test_the_live_view_and_the_plain_lines() -> None:
    screen = io.StringIO()
    live = LiveProgress(Console(file=screen, force_terminal=True, width=100))
    live.begin(3, 1)
    live.started("task-passed", 1)
    live.started("task-failed", 1)
    assert "running 2" in live.status()
    live.finished(_trial("passed"))
    live.finished(_trial("failed"))
    assert live.status().startswith("3/3 done · 1 from before · running 0 · passed 1 · failed 1")
    live.close()
    assert "PASS task-passed" in screen.getvalue()
    assert "FAIL task-failed (1.5 s): why" in screen.getvalue()

    lines = io.StringIO()
    plain = PlainProgress(lines)
    plain.begin(2, 0)
    plain.started("task-timeout", 1)
    plain.finished(_trial("timeout"))
    first, second = lines.getvalue().splitlines()
    assert first == "2 trials"
    assert second.startswith(
        "TIME task-timeout (1.5 s): why  [1/2 done · running 0 · passed 0 · failed 1 · elapsed"
    )


def test_out_keeps_the_files_get_steps_read(tmp_path: Path) -> None:
    from orchestrator.cli.workflow import save_files
    from orchestrator.workflows.results import StepResult, WorkflowResult

    one = StepResult("fetch", "succeeded", files={"/workspace/out/r.txt": b"5\n"})
    fan = StepResult(
        "each",
        "succeeded",
        items=[
            StepResult("each", files={"/tmp/a": b"a"}),
            StepResult("each", files={"/../b": b"b"}),
        ],
    )
    saved = save_files(WorkflowResult(True, {}, {"fetch": one, "each": fan}), tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in saved) == [
        "each-0/tmp/a",
        "each-1/b",
        "fetch/workspace/out/r.txt",
    ]
    assert (tmp_path / "fetch/workspace/out/r.txt").read_bytes() == b"5\n"
