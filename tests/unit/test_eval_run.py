"""Evaluation runs on the fake backend: statuses, graders in the sandbox, resume, reports."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from orchestrator import Config, Orchestrator
from orchestrator.evals import (
    EvalRunDir,
    TrialResult,
    json_report,
    junit_xml,
    load_suite,
    run_suite,
    write_reports,
)
from orchestrator.evals.loading import LoadedSuite


class Progress:
    """Counts what the runner reports."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []
        self.finished: list[TrialResult] = []
        self.running = self.peak = 0
        self.total = self.skipped = 0

    def begin(self, total: int, skipped: int) -> None:
        self.total, self.skipped = total, skipped

    def started_trial(self, task: str, epoch: int) -> None:
        self.started.append((task, epoch))
        self.running += 1
        self.peak = max(self.peak, self.running)

    def finished_trial(self, trial: TrialResult) -> None:
        self.finished.append(trial)
        self.running -= 1


class _Adapter:
    def __init__(self, progress: Progress) -> None:
        self.p = progress

    def begin(self, total: int, skipped: int) -> None:
        self.p.begin(total, skipped)

    def started(self, task: str, epoch: int) -> None:
        self.p.started_trial(task, epoch)

    def finished(self, trial: TrialResult) -> None:
        self.p.finished_trial(trial)


def suite(tmp_path: Path, config: Config, body: str) -> LoadedSuite:
    ws = config.sandbox.workdir
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(body).replace("WS", ws))
    return load_suite(path)


MIXED = """\
name: mixed
defaults: {timeout: 20, env: {WHERE: in-the-sandbox}}
tasks:
  - id: passes
    files: {WS/in.txt: "2 3\\n"}
    setup: ["mkdir -p WS/out"]
    solve:
      - exec: "python3 -c 'a,b=open(\\"WS/in.txt\\").read().split(); print(int(a)+int(b))' > WS/out/r.txt"
      - exec: "cat WS/out/r.txt"
    graders:
      - {type: exit_code, equals: 0}
      - {type: file_matches, path: WS/out/r.txt, pattern: "^5$"}
      - {type: output_matches, pattern: "^5$"}
      - {type: command, run: "test -s WS/out/r.txt && test \\"$WHERE\\" = in-the-sandbox"}
      - name: sandbox env
        type: python
        code: |
          import os
          score = os.environ.get("WHERE") == "in-the-sandbox"
          message = "ran where WHERE=" + str(os.environ.get("WHERE"))
  - id: fails
    solve: [{exec: "echo oops >&2; exit 3"}]
    graders:
      - {type: exit_code, equals: 0}
      - {type: file_matches, path: WS/never.txt, pattern: "x"}
      - {type: python, code: "score = 0.4", threshold: 0.5}
      - {type: python, code: "raise SystemExit('grader broke')"}
  - id: slow
    timeout: 0.5
    solve: [{exec: "sleep 30"}]
    graders: [{type: exit_code}]
  - id: bad-setup
    setup: ["exit 7"]
    solve: [{exec: "true"}]
    graders: [{type: exit_code}]
"""  # noqa: E501


async def test_a_suite_whose_tasks_pass_fail_time_out_and_err(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    loaded = suite(tmp_path, fake_config, MIXED)
    run_dir = EvalRunDir(tmp_path / "run")
    progress = Progress()
    result = await run_suite(orch, loaded, run_dir, concurrency=2, progress=_Adapter(progress))
    statuses = {trial.task: trial.status for trial in result.trials}
    assert statuses == {
        "passes": "passed",
        "fails": "failed",
        "slow": "timeout",
        "bad-setup": "error",
    }
    assert not result.ok
    assert progress.peak <= 2
    assert orch.sessions == []

    passes, fails, slow, bad = result.trials
    assert all(g.passed for g in passes.graders)
    assert passes.graders[-1].message == "ran where WHERE=in-the-sandbox"
    assert set(passes.timings) == {"start", "files", "setup", "solve", "graders"}
    messages = [g.message for g in fails.graders]
    assert messages[0] == "exit code 3, expected 0"
    assert messages[1].endswith("never.txt does not exist")
    assert messages[2] == "score 0.4 (pass from 0.5)"
    assert messages[3].startswith("the grader's code failed (exit code 1): grader broke")
    assert fails.graders[2].score == 0.4
    assert slow.message == "setup and solving did not finish within 0.5 s"
    assert slow.graders == []
    assert bad.message.startswith("setup[0] `exit 7` exited 7")


async def test_reports_parse_and_say_what_failed(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    loaded = suite(tmp_path, fake_config, MIXED)
    run_dir = EvalRunDir(tmp_path / "run")
    result = await run_suite(orch, loaded, run_dir, concurrency=4)
    paths = write_reports(
        result,
        json_path=tmp_path / "r.json",
        junit_path=tmp_path / "r.xml",
        html_path=tmp_path / "r.html",
    )
    assert len(paths) == 3

    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.tag == "testsuites"
    (testsuite,) = root.findall("testsuite")
    assert testsuite.get("tests") == "4"
    assert testsuite.get("failures") == "2"  # the failure and the timeout
    assert testsuite.get("errors") == "1"
    cases = {case.get("name"): case for case in testsuite.findall("testcase")}
    assert set(cases) == {"passes", "fails", "slow", "bad-setup"}
    assert cases["passes"].find("failure") is None
    failure = cases["fails"].find("failure")
    assert failure is not None
    assert failure.get("type") == "exit_code"
    assert failure.get("message") == "exit code 3, expected 0"
    assert "never.txt does not exist" in (failure.text or "")
    timeout = cases["slow"].find("failure")
    assert timeout is not None and timeout.get("type") == "timeout"
    error = cases["bad-setup"].find("error")
    assert error is not None and "exit 7" in (error.get("message") or "")

    document = json.loads((tmp_path / "r.json").read_text())
    assert document == json.loads(json.dumps(json_report(result), default=str))
    assert document["summary"]["passed"] == 1
    tasks = {task["task"]: task for task in document["tasks"]}
    assert tasks["passes"]["graders"][1]["type"] == "file_matches"
    assert tasks["passes"]["solve"]["steps"]["solve-2"]["stdout"] == "5"
    assert "seconds" in tasks["slow"]


async def test_epochs_are_trials_of_their_own(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    loaded = suite(
        tmp_path,
        fake_config,
        """\
        name: epochs
        tasks:
          - {id: twice, epochs: 3, solve: [{exec: "true"}], graders: [{type: exit_code}]}
        """,
    )
    result = await run_suite(orch, loaded, EvalRunDir(tmp_path / "run"))
    assert [(t.task, t.epoch) for t in result.trials] == [("twice", 1), ("twice", 2), ("twice", 3)]
    assert len({t.session_id for t in result.trials}) == 3  # a fresh sandbox each
    names = [c.get("name") for c in ET.fromstring(junit_xml(result)).iter("testcase")]
    assert names == ["twice [epoch 1]", "twice [epoch 2]", "twice [epoch 3]"]


async def test_resume_skips_what_finished_and_reruns_what_changed(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    text = """\
        name: resumable
        tasks:
          - {id: one, solve: [{exec: "true"}], graders: [{type: exit_code}]}
          - {id: two, solve: [{exec: "true"}], graders: [{type: exit_code}]}
          - {id: flaky, setup: ["exit 1"], solve: [{exec: "true"}], graders: [{type: exit_code}]}
        """
    first = suite(tmp_path, fake_config, text)
    await run_suite(orch, first, EvalRunDir(tmp_path / "run"))

    progress = Progress()
    again = await run_suite(
        orch,
        suite(tmp_path, fake_config, text),
        EvalRunDir.resume(tmp_path / "run", "resumable"),
        progress=_Adapter(progress),
    )
    assert progress.skipped == 2
    assert progress.started == [("flaky", 1)]  # an error is tried again
    assert [t.task for t in again.trials] == ["one", "two", "flaky"]

    changed = suite(
        tmp_path,
        fake_config,
        text.replace('id: two, solve: [{exec: "true"}]', 'id: two, solve: [{exec: ":"}]'),
    )
    progress = Progress()
    await run_suite(
        orch,
        changed,
        EvalRunDir.resume(tmp_path / "run", "resumable"),
        progress=_Adapter(progress),
        pattern="t*",
    )
    assert progress.started == [("two", 1)]


async def test_a_trial_cut_short_by_a_stop_is_not_recorded(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    loaded = suite(
        tmp_path,
        fake_config,
        "name: s\ntasks:\n  - {id: a, solve: [{exec: 'true'}], graders: [{type: exit_code}]}\n",
    )
    run_dir = EvalRunDir(tmp_path / "run")
    result = await run_suite(orch, loaded, run_dir, stopping=lambda: True)
    assert result.trials == []
    assert run_dir.finished({"a": loaded.tasks[0].digest}) == {}


async def test_trials_start_in_the_suites_order(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    tasks = "".join(
        f"  - {{id: t{i}, solve: [{{exec: 'true'}}], graders: [{{type: exit_code}}]}}\n"
        for i in range(6)
    )
    loaded = suite(tmp_path, fake_config, "name: ordered\ntasks:\n" + tasks)
    progress = Progress()
    await run_suite(
        orch, loaded, EvalRunDir(tmp_path / "run"), concurrency=1, progress=_Adapter(progress)
    )
    assert progress.started == [(f"t{i}", 1) for i in range(6)]
    assert progress.peak == 1


async def test_an_agent_that_cannot_reach_claude_is_an_error_not_a_failure(
    orch: Orchestrator, fake_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.testing.messages_api import MessagesAPIServer, Reply

    monkeypatch.setenv("ANTHROPIC_API_KEY", "dry-run")
    server = MessagesAPIServer([Reply(text="Nothing to do.", input_tokens=10, output_tokens=5)])
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        loaded = suite(
            tmp_path,
            fake_config,
            f"""\
            name: agents
            defaults: {{agent: {{base_url: "{url}", model: claude-haiku-4-5}}}}
            tasks:
              - {{id: answered, prompt: "say hi", graders: [{{type: exit_code}}]}}
              - {{id: unanswered, prompt: "say hi", graders: [{{type: exit_code}}]}}
            """,
        )
        result = await run_suite(orch, loaded, EvalRunDir(tmp_path / "run"), concurrency=1)
        nursery.cancel_scope.cancel()
    answered, unanswered = result.trials
    assert answered.status == "passed"
    assert (answered.input_tokens, answered.output_tokens) == (10, 5)
    assert answered.cost_usd == pytest.approx((10 * 1.0 + 5 * 5.0) / 1e6)
    assert unanswered.status == "error"
    assert "the fake API's script is exhausted" in unanswered.message
    assert unanswered.graders == []
