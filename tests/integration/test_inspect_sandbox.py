"""The inspect_ai provider against real sandboxes: inspect's own sandbox self-checks, imported
unchanged and run under trio (pytest-trio), one fresh sample sandbox per check; and
`inspect sandbox cleanup sbx`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from inspect_ai.util._sandbox.self_check import *  # noqa: F403

from orchestrator.api.client import SbxClient
from orchestrator.inspect_sandbox import SbxSandboxConfig, SbxSandboxEnvironment
from orchestrator.inspect_sandbox._server import STATE_DIR, OwnServer, start_server

from .conftest import IMAGE

INSPECT = [str(Path(sys.executable).parent / "inspect")]

KNOWN_FAILURES: dict[str, str] = {}
"""Self-checks sbx cannot pass, by name, with the reason (also in the README)."""


@pytest.fixture(scope="module")
def sbx_server() -> Iterator[OwnServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def sandbox_env(
    sbx_server: OwnServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SbxSandboxEnvironment]:
    reason = KNOWN_FAILURES.get(request.node.originalname)
    if reason:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    monkeypatch.setenv("SBX_TOKEN", sbx_server.token)
    config = SbxSandboxConfig(url=sbx_server.url, image=IMAGE)
    environments = await SbxSandboxEnvironment.sample_init("self-check", config, {})
    environment = environments["default"]
    assert isinstance(environment, SbxSandboxEnvironment)
    try:
        yield environment
    finally:
        await SbxSandboxEnvironment.sample_cleanup("self-check", config, environments, False)


async def test_the_sample_runs_as_a_user_with_root_at_hand(
    sandbox_env: SbxSandboxEnvironment,
) -> None:
    assert (await sandbox_env.exec(["whoami"])).stdout.strip() != "root"
    assert (await sandbox_env.exec(["id", "-u"], user="root")).stdout.strip() == "0"
    as_root = await sandbox_env.exec(["sh", "-c", "echo yes > /etc/sbx-root"], user="root")
    assert as_root.success, as_root.stderr  # the root filesystem is writable, by root
    assert await sandbox_env.read_file("/etc/sbx-root") == "yes\n"
    denied = await sandbox_env.exec(["sh", "-c", "echo no > /etc/passwd"])
    assert not denied.success  # and only where the user may write


async def test_a_desktop_connection_is_its_live_view(
    sbx_server: OwnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SBX_TOKEN", sbx_server.token)
    for image, expected in (("desktop", "xdg-open 'http"), (IMAGE, "SBX_URL=")):
        config = SbxSandboxConfig(url=sbx_server.url, image=image)
        environments = await SbxSandboxEnvironment.sample_init("connect", config, {})
        try:
            connection = await environments["default"].connection()
            assert connection.type == "sbx" and connection.command.startswith(expected)
            assert connection.container == environments["default"].info.sandbox_id
        finally:
            await SbxSandboxEnvironment.sample_cleanup("connect", config, environments, False)


async def test_config_files_and_options_reach_the_sample(
    sbx_server: OwnServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SBX_TOKEN", sbx_server.token)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "sbx.yaml").write_text(
        f"url: {sbx_server.url}\nimage: {IMAGE}\nmemory: 512m\nenv: {{STAGE: test}}\n"
        "files:\n  data/input.csv: data.csv\n  /tmp/note.txt: 'text:hello'\n"
    )
    config = str(tmp_path / "sbx.yaml")
    await SbxSandboxEnvironment.task_init("files", config)
    environments = await SbxSandboxEnvironment.sample_init("files", config, {})
    try:
        sandbox = environments["default"]
        assert await sandbox.read_file("data/input.csv") == "a,b\n1,2\n"
        assert await sandbox.read_file("/tmp/note.txt") == "hello"
        assert (await sandbox.exec(["sh", "-c", "echo $STAGE"])).stdout == "test\n"
    finally:
        await SbxSandboxEnvironment.sample_cleanup("files", config, environments, False)
        await SbxSandboxEnvironment.task_cleanup("files", config, True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("imagee: code-runner\n")
    with pytest.raises(Exception, match="imagee"):
        await SbxSandboxEnvironment.task_init("bad", str(bad))


def test_inspect_sandbox_cleanup_closes_eval_sessions_and_stops_left_servers(
    sbx_server: OwnServer,
) -> None:
    with SbxClient(sbx_server.url, sbx_server.token) as client:
        ours = client.create_session(image=IMAGE, labels={"inspect_ai": "sandbox"})["id"]
        other = client.create_session(image=IMAGE)["id"]
        try:
            left = start_server()  # as if its eval had been killed: its parent is gone
            dead = subprocess.Popen(["true"])
            dead.wait()
            left.pid_file.write_text(f'{{"pid": {left.process.pid}, "parent": {dead.pid}}}')
            try:
                env = {**os.environ, "SBX_URL": sbx_server.url, "SBX_TOKEN": sbx_server.token}
                done = subprocess.run(
                    [*INSPECT, "sandbox", "cleanup", "sbx"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert done.returncode == 0, done.stdout + done.stderr
                assert left.process.wait(timeout=60) is not None
                assert not left.pid_file.exists()
                remaining = {s["id"] for s in client.list_sessions()}
                assert ours not in remaining and other in remaining
            finally:
                left.stop()
        finally:
            client.delete_session(other)
    assert STATE_DIR.is_dir()
