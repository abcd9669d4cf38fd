"""A workflow that does not load says so before anything runs: file, line, field, and why."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from orchestrator.workflows import LoadError, json_schema, load_workflow

SPEC_EXAMPLE = """\
# The example of the file format, as documented.
vars: {n: 3}
sessions:                        # one or more named sandboxes, each with session options
  main: {image: code-runner}
steps:
  - id: write
    session: main
    tool: {name: str_replace_based_edit_tool, input: {command: create, path: /workspace/a.py, file_text: "print(6*7)"}}
  - id: run
    needs: [write]
    exec: "python3 /workspace/a.py"          # or a list (argv); also: shell:, put:, get:, agent:
  - id: use
    needs: [run]
    exec: "echo got ${{ steps.run.stdout }} n=${{ vars.n }}"
    if: "${{ steps.run.exit_code == 0 }}"
    retry: {attempts: 3, backoff: 1}
    on_failure: fail                         # fail | continue
  - id: fan
    needs: [run]
    foreach: [1, 2, 3]
    concurrency: 2
    exec: "echo item ${{ item }}"
outputs: {answer: "${{ steps.run.stdout }}"}
"""  # noqa: E501


def problems(tmp_path: Path, text: str) -> list[tuple[int | None, str, str]]:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(LoadError) as caught:
        load_workflow(path)
    for problem in caught.value.problems:
        assert problem.file == str(path)
        assert str(problem).startswith(f"{path}:{problem.line}: {problem.field}: ")
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(SPEC_EXAMPLE)
    workflow = load_workflow(path)
    assert [step.id for step in workflow.steps] == ["write", "run", "use", "fan"]
    assert [step.action for step in workflow.steps] == ["tool", "exec", "exec", "exec"]
    assert {step.session for step in workflow.steps} == {"main"}
    assert workflow.steps[2].retry is not None and workflow.steps[2].retry.attempts == 3
    assert workflow.steps[3].concurrency == 2


def test_yaml_text_and_data_load_the_same(tmp_path: Path) -> None:
    import yaml

    from_text = load_workflow(SPEC_EXAMPLE)
    from_data = load_workflow(yaml.safe_load(SPEC_EXAMPLE))
    assert from_text == from_data
    assert load_workflow(from_text) == from_text


def test_steps_without_ids_get_one_and_the_only_session(tmp_path: Path) -> None:
    workflow = load_workflow("steps:\n  - exec: 'true'\n  - exec: 'false'\n")
    assert [(s.id, s.session) for s in workflow.steps] == [("step-1", "main"), ("step-2", "main")]


def test_a_cycle_is_named_with_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        steps:
          - id: a
            needs: [c]
            exec: "true"
          - id: b
            needs: [a]
            exec: "true"
          - id: c
            needs: [b]
            exec: "true"
        """,
    )
    assert found == [(3, "steps[0].needs", "the steps' needs form a cycle: a -> c -> b -> a")]


def test_unknown_steps_sessions_and_duplicates(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        sessions: {main: {}, side: {}}
        steps:
          - id: a
            session: main
            exec: "true"
          - id: a
            session: other
            exec: "true"
          - id: b
            needs: [a, nope]
            exec: "true"
        """,
    )
    assert (6, "steps[1].id", "duplicate id 'a' (also steps[0])") in found
    assert (7, "steps[1].session", "unknown session 'other'; sessions are: main, side") in found
    assert (9, "steps[2]", "name the step's session, one of: main, side") in found
    assert (10, "steps[2].needs[1]", "unknown step 'nope'; steps are: a, b") in found


def test_references_that_cannot_exist(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        vars: {n: 1}
        secrets: {token: {env: TOKEN}}
        steps:
          - id: run
            exec: "echo ${{ vars.m }} ${{ secrets.other }}"
          - id: fan
            foreach: [1, 2]
            exec: "echo ${{ item }}"
          - id: use
            needs: [run, fan]
            if: steps.run.exit_code == 0 and item
            exec: "echo ${{ steps.run.text }} ${{ steps.fan.stdout }}"
          - id: orphan
            exec: "echo ${{ steps.run.stdout }} ${{ steps.ghost.stdout }} ${{ env.HOME }}"
          - id: self
            needs: [run]
            exec: "echo ${{ steps.self.stdout }} ${{ steps.run.exit_code.x }}"
        outputs:
          fine: "${{ steps.orphan.stdout }}"
          bad: "${{ steps.run.json.a }} ${{ steps.fan.results[0].nope }}"
        """,
    )
    text = "\n".join(f"{line}|{field}|{message}" for line, field, message in found)
    assert "5|steps[0].exec|unknown variable 'm' in vars.m" in text
    assert "5|steps[0].exec|unknown secret 'other' in secrets.other" in text
    assert "11|steps[2].if|`item` is only defined in the action of a step with foreach" in text
    assert "12|steps[2].exec|steps.run.text: a exec step has no output 'text'" in text
    assert "12|steps[2].exec|steps.fan.stdout: step 'fan' runs for each item" in text
    assert "14|steps[3].exec|steps.run.stdout: step 'orphan' does not need 'run'" in text
    assert "14|steps[3].exec|steps.ghost.stdout: no step has the id 'ghost'" in text
    assert "14|steps[3].exec|unknown name 'env' in env.HOME" in text
    assert "17|steps[4].exec|steps.self.stdout: a step cannot use its own outputs" in text
    assert "17|steps[4].exec|steps.run.exit_code.x: exit_code is a single value" in text
    assert "20|outputs.bad|steps.fan.results[0].nope: a exec step has no output 'nope'" in text
    assert not any("outputs.fine" in line for line in text.splitlines())


def test_model_errors_name_the_key_and_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        steps:
          - id: a
            exec: "true"
            retry: {attempts: 0, bakoff: 1}
          - id: b
            exec: "true"
            shell: "true"
          - id: "bad id"
            on_failure: ignore
            get: /x
          - id: c
            put: {path: /x}
        sessions:
          main: {image: code-runner, privileged: true}
        """,
    )
    text = "\n".join(f"{line}|{field}|{message}" for line, field, message in found)
    assert "4|steps[0].retry.attempts|Input should be greater than or equal to 1" in text
    assert (
        "4|steps[0].retry.bakoff|unknown key 'bakoff'; the keys here are: attempts, backoff" in text
    )
    assert (
        "5|steps[1]|a step does exactly one of tool, exec, shell, put, get, agent; this one "
        in text
    )
    assert "8|steps[2].id|String should match pattern" in text
    assert "9|steps[2].on_failure|Input should be 'fail' or 'continue'" in text
    assert (
        "12|steps[3].put|give exactly one of 'content' (the text) or 'from' (a local file)" in text
    )
    assert "14|sessions.main.privileged|unknown key 'privileged'; the keys here are: image," in text


def test_broken_yaml_and_templates_say_where(tmp_path: Path) -> None:
    assert problems(tmp_path, "steps:\n  - exec: [unclosed\n")[0][:2] == (3, "(yaml)")
    found = problems(tmp_path, "steps:\n  - id: a\n    exec: 'echo ${{ vars.n'\n")
    assert found[0][:2] == (3, "steps[0].exec")
    assert "template does not parse: '${{' at column 6 is never closed" in found[0][2]
    assert problems(tmp_path, "- just a list\n")[0][1:] == (
        "(document)",
        "expected a mapping of keys, got list",
    )


def test_characters_yaml_refuses_are_a_load_error() -> None:
    from orchestrator.workflows.loading import load_workflow_text

    with pytest.raises(LoadError, match="special characters are not allowed"):
        load_workflow_text("\u00d5\u0099")


def test_a_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="cannot read it"):
        load_workflow(tmp_path / "nope.yaml")


def test_the_schema_describes_every_key() -> None:
    schema = json_schema()
    json.dumps(schema)
    step = schema["$defs"]["Step"]
    for key in ("id", "needs", "if", "retry", "on_failure", "foreach", "concurrency", "exec"):
        assert key in step["properties"], key
    assert step["additionalProperties"] is False
    assert set(schema["properties"]) >= {"vars", "secrets", "sessions", "steps", "outputs"}
    memory = schema["$defs"]["SandboxOptions"]["properties"]["memory"]["anyOf"]
    assert {"type": "string", "pattern": memory[0]["pattern"]} in memory


def test_foreach_limits_are_checked_at_load() -> None:
    from orchestrator.workflows.model import MAX_CONCURRENCY, MAX_FOREACH_ITEMS

    too_many = {"steps": [{"foreach": list(range(MAX_FOREACH_ITEMS + 1)), "exec": "true"}]}
    with pytest.raises(LoadError, match=f"foreach has over {MAX_FOREACH_ITEMS} items"):
        load_workflow(too_many)
    with pytest.raises(LoadError, match="concurrency limits a foreach step"):
        load_workflow({"steps": [{"concurrency": 2, "exec": "true"}]})
    with pytest.raises(LoadError, match=f"less than or equal to {MAX_CONCURRENCY}"):
        load_workflow({"steps": [{"foreach": [1], "concurrency": 1000, "exec": "true"}]})
