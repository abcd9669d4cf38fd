"""Workflows against the real engine: the CLI's exit statuses and JSON, sessions, no leftovers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import docker

from orchestrator import Orchestrator
from tests.integration.conftest import IMAGE

SBX = [sys.executable, "-m", "orchestrator.cli"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "hello.yaml"


def _leftovers(client: docker.DockerClient, label: str, within: float = 0.0) -> list[str]:
    """Containers with the test's label; ``within`` seconds for the engine to finish removing
    them (an auto-removed container goes shortly after its supervisor lets go)."""
    deadline = time.monotonic() + within
    while True:
        found = client.containers.list(all=True, filters={"label": f"sbx-test={label}"})
        if not found or time.monotonic() >= deadline:
            return [c.name for c in found]
        time.sleep(0.2)


def test_the_example_runs_from_the_command_line(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("image: code-runner", f"image: {IMAGE}")
    flow = tmp_path / "hello.yaml"
    flow.write_text(text)
    done = subprocess.run(
        [
            *SBX,
            "workflow",
            "run",
            str(flow),
            "--var",
            "n=5",
            "--json",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["ok"] is True
    assert document["outputs"] == {"answer": "42", "used": "got 42 n=5", "last": "item 3"}
    assert set(document["steps"]) == {"write", "run", "use", "fan"}
    assert all("status" in s and "seconds" in s for s in document["steps"].values())
    assert json.loads((tmp_path / "o" / "workflow.json").read_text()) == document


def test_exit_statuses(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps:\n  - id: a\n    needs: [b]\n    exec: 'true'\n")
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        f"sessions: {{main: {{image: {IMAGE}}}}}\nsteps:\n  - {{id: a, exec: 'exit 3'}}\n"
    )
    loaded = subprocess.run(
        [*SBX, "workflow", "run", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    failed = subprocess.run(
        [*SBX, "workflow", "run", str(failing)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert loaded.returncode == 2
    assert f"{broken}:3: steps[0].needs[0]: unknown step 'b'" in loaded.stderr
    assert failed.returncode == 1
    assert "✗ a failed" in failed.stderr


async def test_steps_in_two_sandboxes_pass_files_and_leave_nothing(
    orch: Orchestrator, docker_client: docker.DockerClient
) -> None:
    label = uuid.uuid4().hex
    flow = textwrap.dedent(
        f"""\
        sessions:
          build: {{image: {IMAGE}, labels: {{sbx-test: {label}}}}}
          check: {{image: {IMAGE}, labels: {{sbx-test: {label}}}}}
        steps:
          - id: compile
            session: build
            shell: "cd /workspace && printf 'int main(){{return 7;}}' > m.c && gcc -o m m.c"
          - id: hostname
            session: build
            exec: hostname
          - id: other
            session: check
            exec: hostname
          - id: run
            session: build
            needs: [compile]
            exec: "/workspace/m"
            on_failure: continue
          - id: report
            session: check
            needs: [run, hostname, other]
            exec: >-
              echo code=${{{{ steps.run.exit_code }}}}
              same=${{{{ steps.hostname.stdout == steps.other.stdout }}}}
        outputs: {{report: "${{{{ steps.report.stdout }}}}"}}
        """
    )
    result = await orch.workflow(flow)
    assert result.ok, result.to_json()
    assert result.outputs == {"report": "code=7 same=false"}
    assert result.steps["run"].status == "failed"
    assert _leftovers(docker_client, label, within=10) == []


def test_ctrl_c_stops_a_workflow_and_removes_its_sandboxes(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    import signal

    label = uuid.uuid4().hex
    flow = tmp_path / "slow.yaml"
    flow.write_text(
        f"sessions: {{main: {{image: {IMAGE}, labels: {{sbx-test: {label}}}}}}}\n"
        "steps:\n  - {id: wait, exec: 'sleep 120'}\n"
    )
    process = subprocess.Popen(
        [*SBX, "workflow", "run", str(flow)], stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    assert process.stderr.readline().startswith("▶ wait")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted; every sandbox was removed" in stderr
    assert _leftovers(docker_client, label, within=10) == []
