"""Running workflows on the fake backend (the real guest as a local process)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio

from orchestrator import Config, Orchestrator
from orchestrator.workflows import WorkflowError, WorkflowEvent, WorkflowResult

SECRET = "hunter2-s3cret"


def flow(config: Config, body: str) -> str:
    """A workflow whose ``vars.ws`` is the fake sandbox's workspace."""
    header = f'vars: {{ws: "{config.sandbox.workdir}"}}\n'
    text = textwrap.dedent(body)
    if text.startswith("vars:"):  # merge a test's own vars with ws
        first, _, rest = text.partition("\n")
        inner = first[len("vars:") :].strip().strip("{}")
        header = f'vars: {{ws: "{config.sandbox.workdir}", {inner}}}\n'
        text = rest
    return header + text


async def run(
    orch: Orchestrator, text: str, **options: Any
) -> tuple[WorkflowResult, list[WorkflowEvent]]:
    events: list[WorkflowEvent] = []

    async def record(event: WorkflowEvent) -> None:
        events.append(event)

    result = await orch.workflow(text, on_event=record, **options)
    return result, events


async def test_outputs_pass_from_step_to_step(orch: Orchestrator, fake_config: Config) -> None:
    result, _ = await run(
        orch,
        flow(
            fake_config,
            """\
            vars: {n: 3}
            steps:
              - id: write
                tool:
                  name: str_replace_based_edit_tool
                  input: {command: create, path: "${{ vars.ws }}/a.py", file_text: "print(6*7)"}
              - id: run
                needs: [write]
                exec: "python3 ${{ vars.ws }}/a.py"
              - id: use
                needs: [run]
                exec: "echo got ${{ steps.run.stdout }} n=${{ vars.n }}"
                if: "${{ steps.run.exit_code == 0 }}"
              - id: emit
                exec: ["python3", "-c", "import json; print(json.dumps({'a': {'b': [1, 'x y']}}))"]
              - id: quote
                needs: [emit]
                exec: "printf '%s|' ${{ steps.emit.json.a.b[1] }} ${{ vars.n }}"
              - id: view
                needs: [write]
                tool:
                  name: str_replace_based_edit_tool
                  input: {command: view, path: "${{ vars.ws }}/a.py"}
              - id: put
                put: {path: "${{ vars.ws }}/data/in.txt", content: "n is ${{ vars.n }}\\n"}
              - id: get
                needs: [put]
                get: "${{ vars.ws }}/data/in.txt"
            outputs:
              answer: "${{ steps.run.stdout }}"
              used: "${{ steps.use.stdout }}"
              quoted: "${{ steps.quote.stdout }}"
              whole: "${{ steps.emit.json.a }}"
              viewed: "${{ steps.view.text }}"
              got: "${{ steps.get.text }}"
              ok: "${{ steps.use.status == 'succeeded' and steps.run.exit_code == 0 }}"
            """,
        ),
    )
    assert result.ok, result.to_json()
    assert result.outputs.pop("viewed").endswith("     1\tprint(6*7)\n")
    assert result.outputs == {
        "answer": "42",
        "used": "got 42 n=3",
        "quoted": "x y|3|",
        "whole": {"b": [1, "x y"]},
        "got": "n is 3\n",
        "ok": True,
    }
    document = result.to_json()
    assert set(document) >= {"ok", "outputs", "steps"}
    assert document["steps"]["run"]["status"] == "succeeded"
    assert document["steps"]["run"]["exit_code"] == 0
    assert document["steps"]["put"]["files"] == [f"{fake_config.sandbox.workdir}/data/in.txt"]
    assert isinstance(document["steps"]["run"]["seconds"], float)
    json.dumps(document)


async def test_independent_steps_run_at_once(orch: Orchestrator, fake_config: Config) -> None:
    """Four independent steps meet at a barrier: none can finish unless all four run together."""
    ws = fake_config.sandbox.workdir
    barrier = (
        f"touch {ws}/at-$0; for k in $(seq 200); do "
        f'[ "$(ls {ws} | grep -c ^at-)" -ge 4 ] && exit 0; sleep 0.05; done; exit 1'
    )
    steps = "\n".join(f"  - {{id: s{i}, exec: [sh, -c, '{barrier}', '{i}']}}" for i in range(4))
    result, _ = await run(
        orch, f"steps:\n{steps}\n  - {{id: last, needs: [s0, s1, s2, s3], exec: 'true'}}\n"
    )
    assert result.ok, result.to_json()
    assert result.steps["last"].status == "succeeded"


async def test_foreach_runs_each_item_at_most_concurrency_at_a_time(
    orch: Orchestrator, fake_config: Config
) -> None:
    running = peak = 0

    async def track(event: WorkflowEvent) -> None:
        nonlocal running, peak
        if event.index is None:
            return
        running += 1 if event.kind == "step_started" else -1 if event.kind == "step_finished" else 0
        peak = max(peak, running)

    result = await orch.workflow(
        flow(
            fake_config,
            """\
            vars: {items: [a, b, c, d, e]}
            steps:
              - id: fan
                foreach: "${{ vars.items }}"
                concurrency: 2
                exec: "sleep 0.2; echo item ${{ item }}"
              - id: after
                needs: [fan]
                exec: "echo ${{ steps.fan.results[4].stdout }} ${{ steps.fan.results.0.exit_code }}"
            outputs: {last: "${{ steps.after.stdout }}", all: "${{ steps.fan.results }}"}
            """,
        ),
        on_event=track,
    )
    assert result.ok
    assert peak == 2
    assert result.outputs["last"] == "item e 0"
    fan = result.steps["fan"]
    assert fan.items is not None
    assert [entry.outputs["stdout"] for entry in fan.items] == [f"item {x}" for x in "abcde"]
    assert [entry.item for entry in fan.items] == list("abcde")
    assert fan.seconds >= 0.6  # five 0.2 s items, two at a time


async def test_foreach_must_give_a_list(orch: Orchestrator, fake_config: Config) -> None:
    result, _ = await run(
        orch,
        flow(
            fake_config,
            "vars: {x: 3}\nsteps:\n  - {id: f, foreach: '${{ vars.x }}', exec: 'true'}\n",
        ),
    )
    assert not result.ok
    assert result.steps["f"].error == "foreach must give a list, got int"


async def test_retries_back_off_and_stop_at_the_first_success(
    orch: Orchestrator, fake_config: Config
) -> None:
    counter = f"{fake_config.sandbox.workdir}/count"
    flaky = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        'echo "try $n" >&2; [ $n -ge 3 ]'
    )
    result, events = await run(
        orch,
        f"steps:\n  - id: flaky\n    exec: '{flaky}'\n    retry: {{attempts: 5, backoff: 0.05}}\n",
    )
    assert result.ok
    assert result.steps["flaky"].attempts == 3
    retries = [e for e in events if e.kind == "step_retry"]
    assert [e.detail for e in retries] == ["next attempt in 0.05 s", "next attempt in 0.1 s"]
    assert retries[0].error == "exit code 1: try 1"


async def test_retries_give_up_after_the_last_attempt(orch: Orchestrator) -> None:
    result, events = await run(
        orch, "steps:\n  - {id: bad, exec: 'echo no >&2; exit 3', retry: {attempts: 2}}\n"
    )
    assert not result.ok
    step = result.steps["bad"]
    assert (step.status, step.attempts, step.error) == ("failed", 2, "exit code 3: no")
    assert step.outputs["exit_code"] == 3
    assert [e.kind for e in events].count("step_started") == 2


async def test_a_failure_with_on_failure_fail_stops_the_run(orch: Orchestrator) -> None:
    result, _ = await run(
        orch,
        """\
steps:
  - {id: bad, exec: "exit 1"}
  - {id: dependent, needs: [bad], exec: "true"}
  - {id: slow, exec: "sleep 0.3"}
  - {id: later, needs: [slow], exec: "true"}
""",
    )
    assert not result.ok
    statuses = {step_id: step.status for step_id, step in result.steps.items()}
    assert statuses == {
        "bad": "failed",
        "dependent": "skipped",
        "slow": "succeeded",  # already running: it finishes
        "later": "skipped",  # not started after the failure
    }
    assert result.steps["dependent"].reason == "it needs bad, which failed"
    assert result.steps["later"].reason == "not started: step bad failed"


async def test_on_failure_continue_lets_the_run_go_on(orch: Orchestrator) -> None:
    result, _ = await run(
        orch,
        """\
steps:
  - {id: soft, exec: "exit 4", on_failure: continue}
  - id: check
    needs: [soft]
    exec: "echo soft said ${{ steps.soft.exit_code }} and was ${{ steps.soft.status }}"
  - {id: skipped, needs: [soft], if: "steps.soft.exit_code == 0", exec: "true"}
  - {id: after-skip, needs: [skipped], exec: "echo ran"}
outputs: {said: "${{ steps.check.stdout }}"}
""",
    )
    assert result.ok
    assert result.outputs == {"said": "soft said 4 and was failed"}
    assert result.steps["soft"].status == "failed"
    assert result.steps["skipped"].status == "skipped"
    assert result.steps["skipped"].reason == "its if: was false"
    assert result.steps["after-skip"].status == "succeeded"


async def test_a_step_timeout_fails_the_attempt(orch: Orchestrator) -> None:
    result, _ = await run(orch, "steps:\n  - {id: slow, exec: 'sleep 30', timeout: 0.5}\n")
    step = result.steps["slow"]
    assert (step.status, step.outputs["timed_out"]) == ("failed", True)
    assert step.error is not None and step.error.startswith("timed out after")


async def test_the_workflow_timeout_cancels_what_is_left(orch: Orchestrator) -> None:
    started = trio.current_time()
    result, _ = await run(
        orch,
        "timeout: 0.5\nsteps:\n  - {id: slow, exec: 'sleep 30'}\n"
        "  - {id: after, needs: [slow], exec: 'true'}\n",
    )
    assert trio.current_time() - started < 10
    assert not result.ok
    assert result.error == "the workflow did not finish within its timeout (0.5 s)"
    assert {s.status for s in result.steps.values()} == {"cancelled"}
    assert orch.sessions == []


async def test_secrets_are_masked_everywhere(
    orch: Orchestrator, fake_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WF_SECRET", SECRET)
    body = flow(
        fake_config,
        """\
        secrets: {token: {env: WF_SECRET}}
        steps:
          - id: leak
            exec: "echo token=${{ secrets.token }}; echo ${{ secrets.token }} >&2; exit 1"
            on_failure: continue
          - id: pass-on
            needs: [leak]
            exec:
              - sh
              - -c
              - test "$0" = "token=${{ secrets.token }}" && echo same
              - ${{ steps.leak.stdout }}
          - id: file
            put: {path: "${{ vars.ws }}/s.txt", content: "${{ secrets.token }}"}
          - id: back
            needs: [file]
            get: "${{ vars.ws }}/s.txt"
        outputs:
          out: "${{ steps.leak.stdout }}"
          same: "${{ steps.pass-on.stdout }}"
          file: "${{ steps.back.text }}"
        """,
    )
    with structlog.testing.capture_logs() as logs:
        result, events = await run(orch, body)
    assert result.ok
    assert result.outputs == {"out": "token=***", "same": "same", "file": "***"}
    everything = json.dumps(
        {
            "result": result.to_json(),
            "events": [e.to_json() for e in events],
            "logs": logs,
        },
        default=str,
    )
    assert SECRET not in everything
    assert result.steps["leak"].error == "exit code 1: ***"
    assert result.steps["back"].files[f"{fake_config.sandbox.workdir}/s.txt"] == b"***"


async def test_secrets_can_be_given_and_must_exist(orch: Orchestrator) -> None:
    text = "secrets: {t: {env: WF_NOT_SET_ANYWHERE}}\nsteps:\n  - {exec: 'echo ${{ secrets.t }}'}\n"
    with pytest.raises(WorkflowError, match="secret 't' has no value: set WF_NOT_SET_ANYWHERE"):
        await orch.workflow(text)
    result = await orch.workflow(
        text + "outputs: {o: '${{ steps.step-1.stdout }}'}\n", secrets={"t": "given-value"}
    )
    assert result.outputs == {"o": "***"}


async def test_vars_override_and_unknown_vars_are_refused(orch: Orchestrator) -> None:
    text = (
        "vars: {n: 1}\nsteps:\n  - {id: a, exec: 'echo ${{ vars.n }}'}\n"
        "outputs: {n: '${{ steps.a.stdout }}'}\n"
    )
    assert (await orch.workflow(text, vars={"n": 7})).outputs == {"n": "7"}
    with pytest.raises(WorkflowError, match="--var m: the workflow declares no such variable"):
        await orch.workflow(text, vars={"m": 1})


async def test_two_named_sessions_are_two_sandboxes(orch: Orchestrator) -> None:
    result = await orch.workflow(
        """\
sessions: {a: {env: {WHO: first}}, b: {env: {WHO: second}}}
steps:
  - {id: one, session: a, exec: 'echo $WHO'}
  - {id: two, session: b, exec: 'echo $WHO'}
outputs: {who: "${{ steps.one.stdout }} ${{ steps.two.stdout }}"}
"""
    )
    assert result.outputs == {"who": "first second"}
    assert orch.sessions == []


async def test_steps_on_one_shell_take_turns(orch: Orchestrator) -> None:
    """Two independent shell steps on the same persistent shell run one after the other,
    through the router's resource lock, instead of one finding the shell busy."""
    result = await orch.workflow(
        """\
steps:
  - {id: a, shell: "sleep 0.2; export A=1; echo a"}
  - {id: b, shell: "sleep 0.2; echo b"}
  - {id: c, needs: [a, b], shell: 'echo "A=$A"'}
outputs: {c: "${{ steps.c.stdout }}"}
"""
    )
    assert result.ok, result.to_json()
    assert result.outputs == {"c": "A=1"}


async def test_an_image_that_does_not_exist_fails_the_run_without_steps(
    orch: Orchestrator,
) -> None:
    result = await orch.workflow(
        "sessions: {main: {image: 'bad image!'}}\nsteps:\n  - {exec: 'true'}\n"
    )
    assert not result.ok
    assert result.error is not None and "session 'main' did not start" in result.error
    assert result.steps["step-1"].status == "skipped"


async def test_put_from_a_local_file_is_relative_to_the_workflow(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "data.txt").write_text("local data")
    path = tmp_path / "flows" / "flow.yaml"
    path.write_text(
        flow(
            fake_config,
            """\
            steps:
              - {id: up, put: {path: "${{ vars.ws }}/d.txt", from: data.txt}}
              - {id: cat, needs: [up], exec: "cat ${{ vars.ws }}/d.txt"}
            outputs: {d: "${{ steps.cat.stdout }}"}
            """,
        )
    )
    result = await orch.workflow(path)
    assert result.outputs == {"d": "local data"}
    refused = await orch.workflow(path, allow_local_files=False)
    assert refused.steps["up"].error == "put: from: reads this machine's files; not allowed here"


async def test_json_of_output_that_is_not_json_fails_the_step_that_reads_it(
    orch: Orchestrator,
) -> None:
    result = await orch.workflow(
        "steps:\n  - {id: a, exec: 'echo plain'}\n"
        "  - {id: b, needs: [a], exec: 'echo ${{ steps.a.json.x }}'}\n"
    )
    assert result.steps["b"].status == "failed"
    assert result.steps["b"].error is not None
    assert result.steps["b"].error.startswith("template: stdout is not JSON")
