"""A suite that does not load names the file, the line and the field of every problem."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from orchestrator.evals import load_suite, suite_schema
from orchestrator.workflows import LoadError

SPEC_EXAMPLE = """\
name: smoke
defaults: {image: code-runner, timeout: 60}
tasks:
  - id: add
    files: {/workspace/in.txt: "2 3\\n"}            # text, or {from: local/path}
    setup: ["mkdir -p /workspace/out"]
    solve:                                          # a list of workflow steps (no ids needed) ...
      - exec: "python3 -c 'a,b=open(\\"/workspace/in.txt\\").read().split(); print(int(a)+int(b))' > /workspace/out/r.txt"
    # ... or: agent: {model: ..., tools: [bash, str_replace_based_edit_tool], max_turns: 20}
    graders:
      - {type: exit_code, equals: 0}
      - {type: file_matches, path: /workspace/out/r.txt, pattern: "^5$"}
      - {type: command, run: "test -s /workspace/out/r.txt"}     # exit 0 = pass
      - {type: python, code: "score = float(open('/workspace/out/r.txt').read()) == 5"}
    epochs: 1
"""  # noqa: E501


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(LoadError) as caught:
        load_suite(path)
    for problem in caught.value.problems:
        assert problem.file == str(path)
    return "\n".join(f"{p.line}|{p.field}|{p.message}" for p in caught.value.problems)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    loaded = load_suite(write(tmp_path, SPEC_EXAMPLE))
    assert loaded.name == "smoke"
    (task,) = loaded.tasks
    assert (task.id, task.timeout, task.epochs) == ("add", 60.0, 1)
    assert task.options == {"image": "code-runner", "memories": False}
    assert [step.id for step in task.solve.steps] == ["solve-1"]
    assert [g.type for g in task.task.graders] == ["exit_code", "file_matches", "command", "python"]


def test_solve_steps_follow_each_other_unless_they_say_otherwise(tmp_path: Path) -> None:
    loaded = load_suite(
        write(
            tmp_path,
            """\
            name: s
            tasks:
              - id: t
                solve:
                  - exec: "echo a"
                  - {id: b, exec: "echo b"}
                  - {id: free, needs: [], exec: "echo free"}
                  - exec: "echo ${{ steps.free.stdout }}"
                graders: [{type: exit_code}]
            """,
        )
    )
    steps = loaded.tasks[0].solve.steps
    assert [(s.id, s.needs) for s in steps] == [
        ("solve-1", []),
        ("b", ["solve-1"]),
        ("free", []),
        ("solve-4", ["free"]),
    ]


def test_a_task_with_a_prompt_has_the_defaults_agent(tmp_path: Path) -> None:
    loaded = load_suite(
        write(
            tmp_path,
            """\
            name: s
            defaults: {agent: {model: claude-haiku-4-5, tools: [bash], max_turns: 5}}
            tasks:
              - {id: a, prompt: "do it", graders: [{type: exit_code}]}
              - {id: b, prompt: "do that", agent: {max_turns: 2}, graders: [{type: exit_code}]}
            """,
        )
    )
    first, second = loaded.tasks
    assert first.model == "claude-haiku-4-5"
    agent = second.solve.steps[0].agent
    assert agent is not None
    assert (agent.task, agent.max_turns, agent.model, agent.tools) == (
        "do that",
        2,
        "claude-haiku-4-5",
        ["bash"],
    )


def test_every_problem_with_its_line(tmp_path: Path) -> None:
    text = problems(
        tmp_path,
        """\
        name: s
        defaults: {image: code-runner}
        tasks:
          - id: a
            files: {/workspace/x: {from: missing.txt}, relative/y: "text"}
            solve: [{exec: "echo ${{ vars.nope }}"}]
            graders:
              - {type: file_matches, path: /x, pattern: "(unclosed"}
          - id: a
            memory: lots
            agent: {max_turns: 3}
            graders: [{type: exit_code}]
        """,
    )
    assert "5|tasks[0].files./workspace/x.from|no such local file: " in text
    assert "5|tasks[0].files.relative/y|'relative/y': give the sandbox path in full" in text
    assert "6|tasks[0].solve[0].exec|unknown variable 'nope' in vars.nope" in text
    assert "8|tasks[0].graders[0].pattern|not a regular expression: missing )" in text
    assert "9|tasks[1].id|duplicate task id 'a' (also tasks[0])" in text
    assert "10|tasks[1].memory|session option memory:" in text
    assert "11|tasks[1].agent|an agent solver needs the task's prompt: set prompt" in text


def test_model_errors_name_the_grader_key(tmp_path: Path) -> None:
    text = problems(
        tmp_path,
        """\
        name: s
        tasks:
          - id: a
            solve: [{exec: "true"}]
            graders:
              - {type: exit_code}
              - {type: command, run: "true", timout: 3}
              - {type: telepathy}
          - id: b
            graders: [{type: exit_code}]
          - id: c
            prompt: x
            solve: [{exec: "true"}]
            agent: {}
            graders: []
        """,
    )
    assert (
        "7|tasks[0].graders[1].timout|unknown key 'timout'; the keys here are: name, type, run"
        in text
    )
    assert "8|tasks[0].graders[2]|" in text and "'telepathy'" in text
    assert "9|tasks[1]|give a solver: solve (steps), or a prompt for an agent" in text
    assert "15|tasks[2].graders|List should have at least 1 item" in text


def test_a_digest_changes_with_the_task(tmp_path: Path) -> None:
    base = "name: s\ntasks:\n  - {id: a, solve: [{exec: 'true'}], graders: [{type: exit_code}]}\n"
    first = load_suite(write(tmp_path, base)).tasks[0].digest
    again = load_suite(write(tmp_path, base)).tasks[0].digest
    changed = load_suite(write(tmp_path, base.replace("'true'", "'false'"))).tasks[0].digest
    assert first == again != changed


def test_the_suite_schema_is_json() -> None:
    schema = suite_schema()
    json.dumps(schema)
    assert schema["title"] == "sbx evaluation suite"
    assert "graders" in schema["$defs"]["Task"]["properties"]
