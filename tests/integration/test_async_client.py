"""The typed async client against a real `sbx serve`, the same code under asyncio and under trio."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trio

from orchestrator.client import ApiClientError, Client, RemoteSession, StreamEvent, SyncClient
from orchestrator.errors import SessionNotFound
from orchestrator.testing.api_process import ApiProcess, start_api_process

from .conftest import IMAGE

TOKEN = "async-client-token"
SBX = [sys.executable, "-m", "orchestrator.cli"]

# Two agent runs (one per event loop), each: a bash call, then the answer.
_RUN = """\
- input_tokens: 10
  output_tokens: 5
  text: Looking.
  tool_uses: [{name: bash, input: {command: "echo from-claude"}}]
- {input_tokens: 10, output_tokens: 5, text: "It printed from-claude."}
"""
SCRIPT = _RUN * 2


@pytest.fixture(scope="module")
def messages_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = tmp_path_factory.mktemp("script") / "claude.yaml"
    script.write_text(SCRIPT)
    fake = subprocess.Popen(
        [*SBX, "fake-api", "--script", str(script), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert fake.stdout is not None
        line = fake.stdout.readline()
        yield line.split(" on ", 1)[1].split(" ", 1)[0]
    finally:
        fake.terminate()
        fake.wait(timeout=20)
        if fake.stdout is not None:
            fake.stdout.close()


@pytest.fixture(scope="module")
def server(messages_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    root: Path = tmp_path_factory.mktemp("serve")
    running = start_api_process(
        {
            "SBX_TOKEN": TOKEN,
            "ANTHROPIC_BASE_URL": messages_api,
            "ANTHROPIC_API_KEY": "dry-run",
            "SBX_MEMORY__ROOT": str(root / "memories"),
            "SBX_API__RUNS_DIR": str(root / "runs"),
        }
    )
    try:
        yield running
    finally:
        running.stop()


async def sessions_exec_files_and_tools(client: Client) -> None:
    async with client.session(image=IMAGE) as session:
        assert session.info.state == "ready"
        assert session.id in [s.id for s in await client.list_sessions()]

        done = await session.exec("printf 'hi\\n'; printf 'oops' >&2; exit 3")
        assert (done.exit_code, done.stdout, done.stderr) == (3, b"hi\n", b"oops")
        raw = await session.exec(["python3", "-c", "import sys; sys.stdout.buffer.write(b'\\xff')"])
        assert raw.stdout == b"\xff"  # not UTF-8: travels as base64, arrives as bytes
        piped = await session.exec(
            "wc -c; pwd; echo $GREETING",
            stdin=b"\x00\x01\x02",
            cwd="/tmp",
            env={"GREETING": "hello"},
        )
        assert piped.stdout.split() == [b"3", b"/tmp", b"hello"]
        slow = await session.exec("sleep 5", timeout=0.5)
        assert slow.timed_out

        chunks: list[bytes] = []
        async with session.exec_stream("for i in 1 2 3; do echo $i; sleep 0.05; done") as running:
            async for chunk in running:
                assert chunk.stream == "stdout"
                chunks.append(chunk.data)
            result = await running.result()
        assert b"".join(chunks) == b"1\n2\n3\n" and result.exit_code == 0

        # Leaving a stream early cancels its command in the sandbox.
        async with session.exec_stream("echo started; exec sleep 300") as running:
            async for chunk in running:
                assert chunk.data == b"started\n"
                break
        with anyio.fail_after(20):
            while (await client.get_session(session.id)).active_calls:
                await anyio.sleep(0.1)
        left = await session.exec("pgrep -x sleep || true")
        assert left.stdout == b""

        await session.write_file("/workspace/dir/a.txt", "alpha")
        await session.write_file("/workspace/dir/sub/b.bin", b"\x00\xff", mode=0o600)
        assert await session.read_file("/workspace/dir/a.txt") == b"alpha"
        listing = await session.list_files("/workspace/dir", depth=2)
        assert sorted(e.path for e in listing.entries) == [
            "/workspace/dir/a.txt",
            "/workspace/dir/sub",
            "/workspace/dir/sub/b.bin",
        ]
        await folders_round_trip(session)
        await session.remove("/workspace/dir", recursive=True)
        with pytest.raises(ApiClientError) as missing:
            await session.read_file("/workspace/dir/a.txt")
        assert missing.value.status == 404

        results = await session.run_tools(
            [{"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "echo tool"}}]
        )
        assert results[0]["tool_use_id"] == "t1" and not results[0].get("is_error")
        assert "tool" in str(results[0]["content"])

        sid = session.id
    with pytest.raises(SessionNotFound) as gone:  # the library's own class, from the server
        await client.get_session(sid)
    assert gone.value.status == 404 and gone.value.remedy


async def folders_round_trip(session: RemoteSession) -> None:
    """A folder in and out as tar streams; what the sandbox sends is unpacked safely."""
    with tempfile.TemporaryDirectory() as scratch:
        source, back = Path(scratch, "src"), Path(scratch, "back")
        (source / "deep" / "er").mkdir(parents=True)
        for i in range(50):
            (source / "deep" / "er" / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
        (source / "link").symlink_to("deep/er/f0.bin")
        sent = await session.put_dir(source, "/workspace/dir/tree")
        assert sent["entries"] == 53, sent
        await session.exec("ln -s /etc/passwd /workspace/dir/tree/out")  # a link leading out
        copied = await session.get_dir("/workspace/dir/tree", back)
        for i in range(50):
            name = Path("deep", "er", f"f{i}.bin")
            assert (back / name).read_bytes() == (source / name).read_bytes()
        assert os.readlink(back / "link") == "deep/er/f0.bin"
        assert not (back / "out").exists() and any("out" in s for s in copied.skipped)


async def errors_are_the_library_classes(client: Client) -> None:
    with pytest.raises(ApiClientError) as bad:
        await client.create_session(cpus=-1)
    assert bad.value.status == 422 and bad.value.field == "cpus"
    with pytest.raises(ApiClientError) as refused:
        await client.create_session(image="no-such-image-anywhere")
    assert 400 <= refused.value.status < 500
    async with Client(url="http://127.0.0.1:9", token=TOKEN, connect_timeout=5) as nowhere:
        with pytest.raises(ApiClientError) as unreachable:
            await nowhere.list_sessions()
    assert unreachable.value.kind == "unreachable"


async def an_agent_run_and_its_events(client: Client) -> None:
    run = await client.start_agent_run(task="Say what echo prints.", image=IMAGE)
    events: list[StreamEvent] = []
    with anyio.fail_after(120):
        async with client.agent_run_events(run.id) as stream:
            async for event in stream:
                events.append(event)
    kinds = [e.type for e in events]
    assert kinds[-1] == "end", kinds
    finished = await client.get_agent_run(run.id)
    assert finished.status == "finished", finished
    assert finished.final_text == "It printed from-claude."
    assert kinds[0] == "started" and events[0].data["task"] == "Say what echo prints."
    assert any(e.data.get("name") == "bash" for e in events), kinds
    text = "".join(str(e.data["text"]) for e in events if e.type == "text")
    assert text.strip().endswith("It printed from-claude."), text
    transcript = await client.agent_run_transcript(run.id)
    assert transcript


async def scenario(url: str) -> None:
    """Everything the client does, written once: no asyncio or trio in it."""
    async with Client(url, TOKEN, timeout=120) as client:
        await sessions_exec_files_and_tools(client)
        await errors_are_the_library_classes(client)
        await an_agent_run_and_its_events(client)


def test_the_client_under_asyncio(server: ApiProcess) -> None:
    asyncio.run(scenario(server.url))


def test_the_client_under_trio(server: ApiProcess) -> None:
    trio.run(scenario, server.url)


def test_the_sync_client_has_the_same_methods_models_and_errors(server: ApiProcess) -> None:
    with SyncClient(server.url, TOKEN, timeout=120) as client:
        with client.session(image=IMAGE) as sid:
            done = client.exec(sid, "cat; echo $X", stdin=b"\xff", env={"X": "y"})
            assert (done.exit_code, done.stdout) == (0, b"\xffy\n")
            client.write_file(sid, "/workspace/a/b.txt", "sync")
            assert client.read_file(sid, "/workspace/a/b.txt") == b"sync"
            assert [e.name for e in client.list_files(sid, "/workspace/a").entries] == ["b.txt"]
            with client.exec_stream(sid, "echo one; echo two >&2; exit 4") as running:
                chunks = [(c.stream, c.data) for c in running]
                assert running.result().exit_code == 4
            assert sorted(chunks) == [("stderr", b"two\n"), ("stdout", b"one\n")]
            with client.exec_stream(sid, "echo started; exec sleep 300") as running:
                for _ in running:
                    break  # leaving early cancels the command
            deadline = time.monotonic() + 20
            while client.get_session(sid).active_calls and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.exec(sid, "pgrep -x sleep || true").stdout == b""
        with pytest.raises(SessionNotFound):
            client.get_session(sid)
        workflow = (
            f"vars: {{who: nobody}}\nsessions: {{main: {{image: {IMAGE}}}}}\n"
            "steps:\n"
            "  - {id: hi, session: main, exec: 'echo hello ${{ vars.who }}'}\n"
            "outputs: {said: '${{ steps.hi.stdout }}'}\n"
        )
        ran = client.run_workflow(workflow, vars={"who": "sync"})
        assert ran.ok and ran.outputs["said"].strip() == "hello sync", ran
        # The runs the async clients made (this module's other tests) are listed, read
        # back whole, and a run that does not exist is the server's typed 404.
        for run in client.list_agent_runs():
            assert client.get_agent_run(run.id).id == run.id
            assert client.agent_run_transcript(run.id)
        with pytest.raises(ApiClientError) as missing:
            client.cancel_agent_run("no-such-run")
        assert missing.value.status == 404


def test_a_wrong_token_is_the_servers_401(server: ApiProcess) -> None:
    async def main() -> None:
        async with Client(server.url, "not-the-token") as client:
            with pytest.raises(ApiClientError) as denied:
                await client.list_sessions()
        assert denied.value.status == 401

    trio.run(main)


def test_no_sessions_left_behind(server: ApiProcess) -> None:
    async def main() -> list[str]:
        async with Client(server.url, TOKEN) as client:
            return [s.id for s in await client.list_sessions()]

    deadline = time.monotonic() + 10
    while (left := asyncio.run(main())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
    assert os.path.exists(server.log_path)
