"""The example evals of examples/inspect/ run by `inspect eval --sandbox sbx`, as a user would:
the provider starts its own `sbx serve`, under asyncio and under trio, and leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from inspect_ai.log import list_eval_logs, read_eval_log

from orchestrator.api.client import SbxClient
from orchestrator.inspect_sandbox._server import STATE_DIR, start_server

ROOT = Path(__file__).resolve().parents[2]
INSPECT = str(Path(sys.executable).parent / "inspect")


def _inspect_eval(example: str, log_dir: Path, **env: str) -> float:
    """Run one example; the accuracy its log reports."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SBX_")}
    done = subprocess.run(
        [
            *(INSPECT, "eval", f"examples/inspect/{example}"),
            *("--model", "mockllm/model", "--sandbox", "sbx", "--log-dir", str(log_dir)),
        ],
        env={**environment, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logs = list_eval_logs(str(log_dir))
    assert len(logs) == 1
    log = read_eval_log(logs[0])
    assert log.status == "success", log.error
    assert log.results is not None
    return float(log.results.scores[0].metrics["accuracy"].value)


def _left_behind(client: docker.DockerClient) -> list[str]:
    containers = client.containers.list(all=True, filters={"label": "inspect_ai=sandbox"})
    return [c.name for c in containers]


def _own_servers() -> set[str]:
    return {p.name for p in STATE_DIR.glob("*.json")} if STATE_DIR.is_dir() else set()


@pytest.mark.parametrize(
    ("example", "backend"),
    [("hello.py", "asyncio"), ("hello.py", "trio"), ("tools.py", "asyncio")],
)
def test_an_example_eval_scores_full_marks_and_leaves_nothing(
    example: str, backend: str, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    servers_before = _own_servers()
    before = set(_left_behind(docker_client))
    accuracy = _inspect_eval(example, tmp_path / "logs", INSPECT_ASYNC_BACKEND=backend)
    assert accuracy == 1.0
    assert set(_left_behind(docker_client)) - before == set()
    assert _own_servers() - servers_before == set()  # the eval's own server is gone


def test_an_eval_uses_the_server_sbx_url_names(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    server = start_server()
    try:
        servers_before = _own_servers()
        env = {"SBX_URL": server.url, "SBX_TOKEN": server.token}
        assert _inspect_eval("hello.py", tmp_path / "logs", **env) == 1.0
        assert _own_servers() == servers_before  # no server of its own...
        assert server.log_path.read_text().count('"session ready"') == 3  # ...but this one
        with SbxClient(server.url, server.token) as client:
            assert client.list_sessions() == []  # each sample's session closed
    finally:
        server.stop()
    assert _left_behind(docker_client) == []
