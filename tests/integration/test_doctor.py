"""`sbx doctor` against the real engine: what it finds, and how it says what to fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import docker

SBX = [sys.executable, "-m", "orchestrator.cli"]


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SBX, "--log-level", "warning", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_a_healthy_setup_passes_and_starts_a_real_sandbox(
    docker_client: docker.DockerClient,
) -> None:
    r = doctor("--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is True
    version = docker_client.version()["Version"]
    assert version in checks["engine"]["detail"]
    for name in ("base", "code-runner", "desktop"):
        assert checks[f"image {name}"]["status"] == "ok"
    assert checks["sandbox"]["status"] == "ok"
    assert "uid 1000" in checks["sandbox"]["detail"]
    storage = docker_client.info()["Driver"]
    assert ("storage" in checks) is (storage in ("fuse-overlayfs", "vfs"))


def test_a_missing_image_fails_with_the_command_that_builds_it() -> None:
    r = doctor("--quick", env={"SBX_IMAGES__PREFIX": "sbx-doctor-missing-"})
    assert r.returncode == 1
    assert "FAIL" in r.stdout
    assert "sbx images build code-runner" in r.stdout
    assert r.stdout.rstrip().endswith("some checks failed; see the fixes above")


def test_an_unreachable_engine_is_one_failure_naming_docker_host(tmp_path) -> None:
    r = doctor("--json", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert r.returncode == 1
    engine = next(c for c in json.loads(r.stdout)["checks"] if c["name"] == "engine")
    assert engine["status"] == "fail"
    assert "DOCKER_HOST" in engine["fix"]
