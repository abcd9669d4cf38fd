"""``sbx images build --file Dockerfile --tag NAME [CONTEXT]`` against the real engine."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from orchestrator import Config, Orchestrator


def sbx(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=600,
        check=False,
    )


@pytest.fixture
def tag(docker_client: docker.DockerClient) -> Iterator[str]:
    name = f"sbx-test-user-image-{secrets.token_hex(4)}:1"
    yield name
    try:
        docker_client.images.remove(name, force=True)
    except docker.errors.ImageNotFound:
        pass


async def test_a_user_image_is_built_from_a_dockerfile_and_runs(
    tag: str, tmp_path: Path, config: Config
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app/hello.txt").write_text("from the context\n")
    (tmp_path / "build.Dockerfile").write_text(
        "FROM sbx-base\nUSER root\nCOPY app /app\nRUN echo built-step > /app/step.txt\n"
        "WORKDIR /app\nUSER 1000:1000\n"
    )
    built = sbx(
        "images", "build", "--file", str(tmp_path / "build.Dockerfile"), "--tag", tag, str(tmp_path)
    )
    assert built.returncode == 0, built.stderr
    assert tag in built.stdout and "built" in built.stdout
    assert "Step " in built.stderr  # the build's output streamed
    async with Orchestrator(config) as orch, orch.session(image=tag) as s:
        result = await s.exec("cat hello.txt step.txt")
    assert result.stdout == b"from the context\nbuilt-step\n"


def test_build_failures_name_the_step_and_its_output(tag: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM sbx-base\nRUN echo about-to-fail && ls /no-such-dir-sbx\n"
    )
    failed = sbx("images", "build", "--tag", tag, cwd=tmp_path)
    assert failed.returncode == 1
    assert "RUN echo about-to-fail" in failed.stderr and "/no-such-dir-sbx" in failed.stderr
    (tmp_path / "Dockerfile").write_text("FROM sbx-image-that-does-not-exist-here\n")
    no_base = sbx("images", "build", "--tag", tag, str(tmp_path))
    assert no_base.returncode == 1 and "FROM must name a local image" in no_base.stderr
    missing = sbx("images", "build", "--file", str(tmp_path / "nope"), "--tag", tag, str(tmp_path))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    no_context = sbx("images", "build", "--tag", tag, str(tmp_path / "no-context"))
    assert no_context.returncode == 2 and "not a folder" in no_context.stderr
