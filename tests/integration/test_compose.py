"""The compose deployment: the file validates with the Compose tool of this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, "neither `docker compose` nor docker-compose is installed"
    return [legacy]


def test_the_compose_file_validates_and_wires_the_server_safely() -> None:
    env = {**os.environ, "SBX_TOKEN": "t"}
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["sbx"]
    volumes = [
        str(v if isinstance(v, str) else f"{v['source']}:{v['target']}") for v in service["volumes"]
    ]
    assert any(v.startswith("/var/run/docker.sock:/var/run/docker.sock") for v in volumes)
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service["environment"]["SBX_TOKEN"] == "t"
    assert "127.0.0.1:8765" in str(service["ports"])


def test_the_compose_file_refuses_to_run_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SBX_TOKEN"}
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "SBX_TOKEN" in result.stderr
