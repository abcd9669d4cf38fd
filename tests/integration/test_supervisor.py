"""What survives a supervisor's death: nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import docker
import trio

from orchestrator import Orchestrator
from orchestrator.backends.base import LABEL_MANAGED, LABEL_OWNER, LABEL_SUPERVISOR
from orchestrator.supervisor import process_identity

from .conftest import IMAGE


def _managed(client: docker.DockerClient, label: str) -> list[str]:
    return [c.id for c in client.containers.list(all=True, filters={"label": label})]


async def test_a_supervisor_killed_with_sigkill_leaves_no_container(docker_client) -> None:
    script = textwrap.dedent(
        f"""
        import sys, trio
        from orchestrator import Orchestrator
        async def main():
            async with Orchestrator() as orch:
                sessions = [await orch.open_session(image={IMAGE!r}) for _ in range(3)]
                await sessions[0].exec("sleep 1000 &")
                print(" ".join(s.id for s in sessions), flush=True)
                await trio.sleep_forever()
        trio.run(main)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        with trio.fail_after(120):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        session_ids = line.decode().split()
        assert len(session_ids) == 3
        for session_id in session_ids:
            assert _managed(docker_client, f"io.sbx.session={session_id}")
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [sid for sid in session_ids if _managed(docker_client, f"io.sbx.session={sid}")]
        if not left:
            break
        await trio.sleep(0.2)
    assert left == [], "containers outlived their SIGKILLed supervisor"


async def test_orphans_of_dead_supervisors_are_reaped_at_start(docker_client, config) -> None:
    host, _, _ = process_identity().split(":")
    dead = f"{host}:999999:1"
    image = config.image_name(IMAGE)
    created = docker_client.api.create_container(
        image,
        labels={
            LABEL_MANAGED: "true",
            LABEL_OWNER: config.owner,
            LABEL_SUPERVISOR: dead,
            "io.sbx.session": "orphan-test",
        },
        stdin_open=True,
    )["Id"]
    live_elsewhere = docker_client.api.create_container(
        image,
        labels={
            LABEL_MANAGED: "true",
            LABEL_OWNER: config.owner,
            LABEL_SUPERVISOR: "another-host:1:1",
            "io.sbx.session": "orphan-test-2",
        },
        stdin_open=True,
    )["Id"]
    try:
        async with Orchestrator(config):
            pass
        remaining = _managed(docker_client, f"{LABEL_SUPERVISOR}={dead}")
        assert created not in remaining
        # A supervisor on another host may be alive: its unexpired sandbox stays.
        assert live_elsewhere in _managed(docker_client, "io.sbx.session=orphan-test-2")
    finally:
        for cid in (created, live_elsewhere):
            try:
                docker_client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass


async def test_sigterm_and_sigint_shut_down_with_nothing_left(docker_client) -> None:
    import signal

    for sig, expected in ((signal.SIGTERM, 128 + 15), (signal.SIGINT, 128 + 2)):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "--log-level",
                "info",
                "--log-format",
                "json",
                "run",
                "--image",
                IMAGE,
                "--",
                "sh",
                "-c",
                "echo started; sleep 300",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        with trio.fail_after(120):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert line == b"started\n"
        proc.send_signal(sig)
        with trio.fail_after(30):
            code = await trio.to_thread.run_sync(proc.wait)
        logs = proc.stderr.read().decode()
        session_ids = {
            json.loads(entry)["session_id"]
            for entry in logs.splitlines()
            if entry.startswith("{") and "session_id" in entry
        }
        assert code == expected
        assert len(session_ids) == 1
        # Removed by the shutdown itself, not later by the dead man's switch.
        assert _managed(docker_client, f"io.sbx.session={session_ids.pop()}") == []
