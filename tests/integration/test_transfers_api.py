"""Files of any size and folders over the HTTP API, the HTTP client and ``sbx cp -r``."""

from __future__ import annotations

import hashlib
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from orchestrator.api.client import SbxClient
from orchestrator.testing.api_process import ApiProcess, start_api_process
from tests.integration.conftest import IMAGE
from tests.integration.test_transfers import BIG, _tree_digest, make_tree

TOKEN = "transfer-token"


@pytest.fixture(scope="module")
def server() -> Iterator[ApiProcess]:
    running = start_api_process({"SBX_TOKEN": TOKEN, "SBX_SESSION__FILE_SIZE_LIMIT": "256m"})
    yield running
    running.stop()


def client_of(server: ApiProcess) -> SbxClient:
    return SbxClient(server.url, TOKEN)


async def test_a_100_mib_file_round_trips_over_http_in_bounded_memory(
    server: ApiProcess, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(random.Random(2).randbytes(BIG))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    with client_of(server) as client:
        sid = client.create_session(image=IMAGE)["id"]
        baseline = peak = server.rss()
        done = trio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, server.rss())
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            put = await trio.to_thread.run_sync(
                client.upload_file, sid, "/workspace/big.bin", source
            )
            size = await trio.to_thread.run_sync(
                client.download_file, sid, "/workspace/big.bin", tmp_path / "back.bin"
            )
            done.set()
        inside = client.exec(sid, "sha256sum /workspace/big.bin")
    assert put["size"] == size == BIG
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    assert inside["stdout"].split()[0] == digest
    # Neither direction holds the file: the server grows by far less than 100 MiB.
    assert peak - baseline < 40 << 20, (baseline, peak)


async def test_sbx_cp_r_round_trips_a_5000_file_folder(server: ApiProcess, tmp_path: Path) -> None:
    source = tmp_path / "source"
    make_tree(source)
    env = {**os.environ, "SBX_URL": server.url, "SBX_TOKEN": TOKEN}
    with client_of(server) as client:
        sid = client.create_session(image=IMAGE)["id"]

    async def sbx(*args: str) -> trio.CompletedProcess[bytes]:
        return await trio.run_process(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )

    up = await sbx("cp", "-r", str(source), f"{sid}:/workspace/tree")
    assert up.returncode == 0, up.stderr.decode()
    down = await sbx("cp", "-r", f"{sid}:/workspace/tree", str(tmp_path / "back"))
    assert down.returncode == 0, down.stderr.decode()
    assert _tree_digest(tmp_path / "back") == _tree_digest(source)
    plain = await sbx("cp", str(source), f"{sid}:/workspace/x")
    assert plain.returncode != 0 and b"sbx cp -r" in plain.stderr
    to_stdout = await sbx("cp", f"{sid}:/workspace/tree/d1/e1/f1/ünïcødé-1", "-")
    assert to_stdout.stdout == (source / "d1/e1/f1/ünïcødé-1").read_bytes()
    missing = await sbx("cp", "-r", f"{sid}:/workspace/nope", str(tmp_path / "none"))
    assert missing.returncode == 1 and b"nope" in missing.stderr
    with client_of(server) as client:
        client.delete_session(sid)


async def test_exec_details_over_http(server: ApiProcess) -> None:
    with client_of(server) as client:
        sid = client.create_session(image=IMAGE)["id"]
        client.exec(sid, "mkdir -p /workspace/sub")
        assert client.exec(sid, "pwd", cwd="sub")["stdout"] == "/workspace/sub\n"
        missing = client.exec(sid, ["no-such-tool-here"])
        assert (missing["exit_code"], missing["spawn_error"]) == (127, "not_found")
        echoed = client.exec(sid, "od -An -tx1", stdin_b64="AAH+/w==")
        assert echoed["stdout"].split() == ["00", "01", "fe", "ff"]
        client.delete_session(sid)
