"""Snapshots and forks on the real engine, with the real images.

Every snapshot a test takes is removed by the ``snapshots`` fixture, which then
checks that nothing of it is left: no tag, no half-made image.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import docker
import httpx
import pytest
import trio

from orchestrator import Orchestrator, Snapshot, SnapshotError
from orchestrator.testing.api_process import start_api_process

from .conftest import IMAGE

SBX = [sys.executable, "-m", "orchestrator.cli"]
TOKEN = "snapshot-token"


def sbx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*SBX, *args],
        capture_output=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def snapshots(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Names of the snapshot images a test made: removed afterwards, and checked gone."""
    made: list[str] = []
    before = {i.id for i in docker_client.images.list(all=True)}
    yield made
    for name in made:
        try:
            docker_client.images.remove(name)
        except docker.errors.ImageNotFound:
            pass
    for name in made:
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(name)
    left = [
        image.id
        for image in docker_client.images.list(
            all=True, filters={"label": "io.sbx.snapshot.partial"}
        )
        if image.id not in before
    ]
    assert left == [], "a snapshot left a half-made image"


PARENT_SETUP = """
set -e
mkdir -p /workspace/repo/src /home/sandbox/.cache
echo parent-workspace > /workspace/repo/src/main.txt
head -c 3000000 /dev/urandom > /workspace/repo/blob.bin
sha256sum /workspace/repo/blob.bin | cut -d' ' -f1 > /tmp/blob.sum
echo home > /home/sandbox/.cache/h
echo secret > /workspace/locked && chmod 000 /workspace/locked
ln -s /etc/hostname /workspace/link
mkdir -p /tmp/sbx-desktop && echo guest-state > /tmp/sbx-desktop/x
echo runtime > /run/state 2>/dev/null || true
"""


async def test_a_snapshot_forked_three_times_gives_three_independent_sessions(
    orch: Orchestrator, snapshots: list[str], docker_client: docker.DockerClient
) -> None:
    async with orch.session(image=IMAGE, writable_root=True) as parent:
        assert (await parent.exec(PARENT_SETUP)).exit_code == 0
        setup_root = await parent.exec("echo parent-root > /opt/root-change", user="root")
        assert setup_root.exit_code == 0, setup_root.stderr
        blob_sum = (await parent.read_file("/tmp/blob.sum")).strip()
        snap = await parent.snapshot()
        snapshots.append(snap.image)
        # The parent goes on undisturbed.
        assert (
            await parent.exec("cat /workspace/repo/src/main.txt")
        ).stdout == b"parent-workspace\n"

    assert isinstance(snap, Snapshot) and snap.parent_session == parent.id
    assert snap.files >= 4 and snap.bytes >= 3_000_000
    labels = docker_client.images.get(snap.image).labels
    assert labels["io.sbx.snapshot.session"] == parent.id
    assert labels["io.sbx.snapshot.parent"] == parent.image
    # None of the sandbox's own labels: a fork is nobody's sandbox until it starts.
    assert not {"io.sbx.session", "io.sbx.supervisor", "io.sbx.expires"} & set(labels)

    async def fork_checks(i: int, results: dict[int, dict[str, bytes]]) -> None:
        async with orch.session(image=snap) as fork:
            seen: dict[str, bytes] = {}
            for key, command in {
                "main": "cat /workspace/repo/src/main.txt",
                "root": "cat /opt/root-change",
                "home": "cat /home/sandbox/.cache/h",
                "blob": "sha256sum /workspace/repo/blob.bin | cut -d' ' -f1",
                "locked_mode": "stat -c '%a %U' /workspace/locked",
                "link": "readlink /workspace/link",
                "guest_state": "ls /tmp/sbx-desktop 2>&1 || true",
                "run": "cat /run/state 2>&1 || true",
                "owner": "stat -c %U /workspace/repo/src/main.txt",
            }.items():
                seen[key] = (await fork.exec(command)).stdout.strip()
            seen["locked"] = (await fork.exec("cat /workspace/locked", user="root")).stdout
            await fork.write_file(f"/workspace/fork-{i}.txt", f"fork {i}")
            await fork.exec(f"echo {i} >> /workspace/repo/src/main.txt")
            await trio.sleep(0.5)  # every fork has written before any looks
            listing = await fork.exec("ls /workspace")
            seen["listing"] = listing.stdout
            seen["main_after"] = (await fork.exec("cat /workspace/repo/src/main.txt")).stdout
            results[i] = seen

    results: dict[int, dict[str, bytes]] = {}
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(fork_checks, i, results)

    for i, seen in results.items():
        assert seen["main"] == b"parent-workspace"
        assert seen["root"] == b"parent-root"
        assert seen["home"] == b"home"
        assert seen["blob"] == blob_sum
        assert seen["locked_mode"] == b"0 sandbox"
        assert seen["locked"] == b"secret\n"
        assert seen["link"] == b"/etc/hostname"
        assert seen["owner"] == b"sandbox"
        assert b"No such file" in seen["guest_state"]
        assert b"No such file" in seen["run"]
        names = seen["listing"].split()
        assert f"fork-{i}.txt".encode() in names
        assert not [n for n in names if n.startswith(b"fork-") and n != f"fork-{i}.txt".encode()]
        assert seen["main_after"] == f"parent-workspace\n{i}\n".encode()


NO_PYTHON = b"""FROM sbx-base:latest
USER root
RUN rm -rf /usr/bin/python3* /usr/lib/python3* && mkdir -p /app && echo repo > /app/README
WORKDIR /app
ENV APP_MODE=evaluation
"""


async def test_an_image_without_python_snapshots_and_forks_with_its_workdir_and_env(
    orch: Orchestrator, snapshots: list[str], docker_client: docker.DockerClient
) -> None:
    import io
    import tarfile

    tag = "sbxtest-snapshot-no-python:latest"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(NO_PYTHON)
        tar.addfile(info, io.BytesIO(NO_PYTHON))
    context.seek(0)
    await trio.to_thread.run_sync(
        lambda: docker_client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    )
    try:
        async with orch.session(image=tag, memories=False, writable_root=True) as parent:
            assert (await parent.exec("command -v python3 || echo none")).stdout == b"none\n"
            await parent.exec("echo notes > /workspace/notes")
            root = await parent.exec("echo change >> /app/README", user="root")
            assert root.exit_code == 0, root.stderr
            snap = await parent.snapshot()
            snapshots.append(snap.image)
        async with orch.session(image=snap, memories=False) as fork:
            seen = await fork.exec("pwd; echo $APP_MODE; cat /workspace/notes /app/README")
        assert seen.stdout.split() == [b"/app", b"evaluation", b"notes", b"repo", b"change"]
    finally:
        for name in snapshots:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(name)
        docker_client.images.remove(tag)


async def test_a_snapshot_of_a_fork_keeps_what_the_fork_deleted_deleted(
    orch: Orchestrator, snapshots: list[str]
) -> None:
    async with orch.session(image=IMAGE) as parent:
        await parent.exec("echo a > /workspace/a; echo b > /workspace/b")
        first = await parent.snapshot()
        snapshots.append(first.image)
    async with orch.session(image=first) as fork:
        await fork.exec("rm /workspace/a; echo c > /workspace/c")
        second = await fork.snapshot()
        snapshots.append(second.image)
    assert second.parent_image == first.image
    async with orch.session(image=second) as grandchild:
        listing = await grandchild.exec("ls /workspace")
    assert listing.stdout.split() == [b"b", b"c"]


async def test_a_full_disk_and_unreadable_files_still_snapshot_and_a_small_fork_says_why(
    orch: Orchestrator, snapshots: list[str]
) -> None:
    sizes = {"/workspace": "24m"}
    async with orch.session(image=IMAGE, tmpfs_sizes=sizes) as parent:
        fill = await parent.exec(
            "mkdir /workspace/closed && echo x > /workspace/closed/f && chmod 000 /workspace/closed"
            " && head -c 40000000 /dev/zero > /workspace/fill"
        )
        assert b"No space left" in fill.stderr
        with trio.fail_after(orch.config.session.snapshot_timeout):
            snap = await parent.snapshot()
        snapshots.append(snap.image)
    assert snap.bytes > 20_000_000
    async with orch.session(image=snap, tmpfs_sizes=sizes) as fork:
        mode = await fork.exec("stat -c %a /workspace/closed; stat -c %s /workspace/fill")
        assert mode.stdout.split()[0] == b"0"
        assert int(mode.stdout.split()[1]) > 20_000_000
    with pytest.raises(SnapshotError, match=r"tmpfs_sizes"):
        async with orch.session(image=snap, tmpfs_sizes={"/workspace": "8m"}):
            pass


async def test_a_snapshot_past_its_deadline_or_size_is_a_snapshot_error_and_the_session_goes_on(
    orch: Orchestrator, snapshots: list[str], docker_client: docker.DockerClient
) -> None:
    import glob
    import tempfile

    async with orch.session(image=IMAGE) as s:
        fill = await s.exec("head -c 300000000 /dev/zero > /workspace/big")
        assert fill.exit_code == 0, fill.stderr
        orch.config.session.snapshot_timeout = 0.3
        with trio.fail_after(10), pytest.raises(SnapshotError, match="snapshot_timeout"):
            await s.snapshot()
        assert (await s.exec("stat -c %s /workspace/big")).stdout == b"300000000\n"
        orch.config.session.snapshot_timeout = 120
        await s.exec("rm /workspace/big; truncate -s 50G /workspace/sparse")
        with trio.fail_after(60), pytest.raises(SnapshotError, match="sparse file"):
            await s.snapshot()
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "sbx-snapshot-*"))


def test_snapshot_over_the_api_and_the_cli_then_ls_rm_and_gc(snapshots: list[str]) -> None:
    env = {"SBX_TOKEN": TOKEN}
    server = start_api_process(env)
    try:
        with httpx.Client(
            base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            created = client.post("/v1/sessions", json={"image": IMAGE})
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
            client.post(f"/v1/sessions/{sid}/exec", json={"command": "echo api > /workspace/f"})
            response = client.post(f"/v1/sessions/{sid}/snapshot")
            assert response.status_code == 201, response.text
            body = response.json()
            snapshots.append(body["image"])
            assert body["parent_session"] == sid and body["image_id"].startswith("sha256:")

            cli_env = {"SBX_URL": server.url, **env}
            r = sbx("session", "snapshot", sid, env=cli_env)
            assert r.returncode == 0, r.stderr
            by_cli = r.stdout.decode().strip()
            snapshots.append(by_cli)
            assert by_cli.startswith("sbx-snapshot:") and by_cli != body["image"]

            fork = client.post("/v1/sessions", json={"image": body["image"]})
            assert fork.status_code == 201, fork.text
            fid = fork.json()["id"]
            out = client.post(f"/v1/sessions/{fid}/exec", json={"command": "cat /workspace/f"})
            assert out.json()["stdout"] == "api\n"
            for session_id in (sid, fid):
                client.delete(f"/v1/sessions/{session_id}")
            missing = client.post("/v1/sessions/nope/snapshot")
            assert missing.status_code == 404
            assert missing.json()["error"]["type"] == "session_not_found"
    finally:
        server.stop()

    listed = sbx("images", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["image"]: row for row in json.loads(listed.stdout)["images"]}
    assert rows[body["image"]]["kind"] == "snapshot"
    assert rows[body["image"]]["session"] == sid
    assert rows[by_cli]["kind"] == "snapshot"
    table = sbx("images", "ls").stdout.decode()
    assert body["image"] in table and f"session {sid}" in table

    removed = sbx("images", "rm", body["image"])
    assert removed.returncode == 0, removed.stderr
    refused = sbx("images", "rm", "sbx-base")
    assert refused.returncode != 0 and b"--force" in refused.stderr

    gc = sbx("gc", "--json", "--snapshots", "0s", env={"SBX_OWNER": "snapshot-test-owner"})
    assert gc.returncode == 0, gc.stderr
    assert by_cli in json.loads(gc.stdout)["snapshots"]
    after = json.loads(sbx("images", "ls", "--json").stdout)["images"]
    assert not {body["image"], by_cli} & {row["image"] for row in after}


async def test_a_desktop_session_forks_with_a_fresh_desktop_and_its_files(
    orch: Orchestrator, snapshots: list[str]
) -> None:
    async with orch.session(image="desktop") as parent:
        await parent.exec("echo drawing > /workspace/d.txt")
        snap = await parent.snapshot()
        snapshots.append(snap.image)
    assert not [s for s in snap.skipped if "X11" in s["path"]]  # its sockets: never archived
    async with orch.session(image=snap) as fork:
        assert (await fork.exec("cat /workspace/d.txt")).stdout == b"drawing\n"
        assert (await fork.screenshot()).startswith(b"\x89PNG")
