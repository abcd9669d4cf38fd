"""``exec`` through the real guest (as a local process via the fake backend)."""

from __future__ import annotations

import os
import secrets
import subprocess

import trio

from orchestrator import Orchestrator, OutputChunk


def _alive(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return found.stdout.split()


async def test_exit_code_stdout_and_stderr_are_kept_apart(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.exec("printf out; printf err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out", b"err")
    assert not r.timed_out
    assert not r.ok


async def test_argv_is_not_interpreted_by_a_shell(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.exec(["echo", "$HOME", "a;b"])
    assert r.stdout == b"$HOME a;b\n"


async def test_command_not_found_is_127_with_the_shells_message(orch: Orchestrator) -> None:
    async with orch.session() as s:
        via_shell = await s.exec("no-such-command-xyz")
        via_argv = await s.exec(["no-such-command-xyz"])
    assert via_shell.exit_code == 127
    assert b"no-such-command-xyz" in via_shell.stderr
    assert b"not found" in via_shell.stderr
    assert via_argv.exit_code == 127
    assert b"no-such-command-xyz: command not found" in via_argv.stderr


async def test_non_utf8_output_is_kept_as_bytes(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.exec(["printf", "\\377\\376ok\\000"])
    assert r.stdout == b"\xff\xfeok\x00"
    assert r.stdout_text == "\ufffd\ufffdok\x00"  # decoded for display with replacement


async def test_stdin_cwd_and_env_reach_the_command(orch: Orchestrator, fake_config) -> None:
    scratch = fake_config.sandbox.allowed_roots[1]
    async with orch.session() as s:
        r = await s.exec(
            "cat; pwd; echo $GREETING", stdin=b"in\n", cwd=scratch, env={"GREETING": "hej"}
        )
    assert r.stdout == f"in\n{scratch}\nhej\n".encode()


async def test_missing_working_directory_is_a_clear_error(orch: Orchestrator) -> None:
    import pytest

    from orchestrator import GuestError

    async with orch.session() as s:
        with pytest.raises(GuestError, match="does not exist"):
            await s.exec("true", cwd="/no/such/dir")
        assert (await s.exec("true")).exit_code == 0  # the session is fine afterwards


async def test_timeout_kills_the_whole_tree_even_if_term_is_ignored(orch: Orchestrator) -> None:
    marker = f"sbxtest-{secrets.token_hex(4)}"
    script = (
        f"trap '' TERM; (exec -a {marker}-child sleep 300) & "
        f"setsid sh -c 'exec -a {marker}-escaped sleep 300' & "
        "while true; do sleep 0.1; done"
    )
    async with orch.session() as s:
        start = trio.current_time()
        r = await s.exec(["bash", "-c", script], timeout=0.5)
        elapsed = trio.current_time() - start
    assert r.timed_out
    assert r.signal == 9  # TERM was ignored, so KILL after the grace period
    assert r.exit_code == 137
    assert elapsed < 5
    await trio.sleep(0.2)
    assert _alive(marker) == []


async def test_output_streams_in_order_while_the_command_runs(orch: Orchestrator) -> None:
    chunks: list[OutputChunk] = []
    seen_before_end = trio.Event()

    def collect(chunk: OutputChunk) -> None:
        chunks.append(chunk)
        if b"first" in chunk.data:
            seen_before_end.set()

    async with orch.session() as s:
        async with s.exec_stream("echo first; sleep 0.5; echo second >&2; echo third") as running:
            async for chunk in running:
                collect(chunk)
                if chunk.data == b"first\n":
                    # The rest has not been produced yet: we are streaming, not buffering.
                    assert not running._call.done.is_set()
            result = await running.result()
    assert [(c.stream, c.data) for c in chunks] == [
        ("stdout", b"first\n"),
        ("stderr", b"second\n"),
        ("stdout", b"third\n"),
    ]
    assert result.stdout == b"first\nthird\n"
    assert seen_before_end.is_set()


async def test_output_over_the_cap_is_truncated_and_counted(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.exec("head -c 100000 /dev/zero; echo tail >&2", max_output=1000)
    assert len(r.stdout) == 1000
    assert r.stdout_truncated and r.truncated
    assert r.stdout_bytes == 100000
    assert r.stderr == b"tail\n"
    assert not r.stderr_truncated


async def test_a_slow_reader_holds_the_command_back_instead_of_buffering(
    orch: Orchestrator,
) -> None:
    total = 0
    peak = 0
    async with orch.session() as s:
        async with s.exec_stream("head -c 20000000 /dev/zero", max_output=30_000_000) as running:
            call = running._call
            async for chunk in running:
                total += len(chunk.data)
                peak = max(peak, call._buffered + len(chunk.data))
                await trio.sleep(0.001)
            await running.result()
    assert total == 20_000_000
    assert peak <= call.window + 64 * 1024


async def test_leaving_a_stream_early_kills_the_command(orch: Orchestrator) -> None:
    marker = f"sbxtest-{secrets.token_hex(4)}"
    async with orch.session() as s:
        async with s.exec_stream(
            ["bash", "-c", f"exec -a {marker} bash -c 'echo go; sleep 300'"]
        ) as running:
            async for _ in running:
                break
        assert _alive(marker) == []
        assert (await s.exec("echo still fine")).stdout == b"still fine\n"


async def test_cancelling_the_caller_kills_the_command(orch: Orchestrator) -> None:
    marker = f"sbxtest-{secrets.token_hex(4)}"
    async with orch.session() as s:
        with trio.move_on_after(0.3):
            await s.exec(["bash", "-c", f"exec -a {marker} sleep 300"])
        assert _alive(marker) == []


async def test_many_concurrent_execs_share_one_channel(orch: Orchestrator) -> None:
    results: dict[int, bytes] = {}
    async with orch.session() as s:

        async def one(i: int) -> None:
            results[i] = (await s.exec(f"sleep 0.0{i % 5}; echo {i}")).stdout

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)
    assert results == {i: f"{i}\n".encode() for i in range(30)}


async def test_exit_by_signal_is_reported(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.exec("kill -SEGV $$")
    assert r.signal == 11
    assert r.exit_code == 139


async def test_background_child_holding_the_pipe_does_not_hang_the_call(
    orch: Orchestrator,
) -> None:
    async with orch.session() as s:
        with trio.fail_after(5):
            r = await s.exec("sleep 3 & echo done")
    assert r.stdout == b"done\n"
    assert os.environ.get("SBX_NEVER") is None


async def test_commands_start_with_default_signal_dispositions(orch: Orchestrator) -> None:
    # The guest (Python) ignores SIGPIPE; an ignored signal would survive exec
    # and make `producer | head` spin on EPIPE instead of ending.
    async with orch.session() as s:
        r = await s.exec(["bash", "-c", "trap -p PIPE; trap -p XFSZ; echo checked"])
        pipeline = await s.exec("yes | head -n 2", timeout=10)
    assert r.stdout == b"checked\n"
    assert pipeline.stdout == b"y\ny\n"
    assert pipeline.exit_code == 0


async def test_path_lookup_uses_the_commands_own_path(orch: Orchestrator, fake_config) -> None:
    scratch = fake_config.sandbox.allowed_roots[1]
    async with orch.session() as s:
        await s.write_file(
            f"{scratch}/bin/hello-sbx", "#!/bin/sh\necho from-custom-path\n", mode=0o755
        )
        found = await s.exec(["hello-sbx"], env={"PATH": f"{scratch}/bin:/usr/bin:/bin"})
        missing = await s.exec(["hello-sbx"])
        relative = await s.exec(["./bin/hello-sbx"], cwd=scratch)
    assert found.stdout == b"from-custom-path\n"
    assert missing.exit_code == 127
    assert relative.stdout == b"from-custom-path\n"


async def test_a_program_that_moved_is_found_again(orch: Orchestrator, fake_config) -> None:
    scratch = fake_config.sandbox.allowed_roots[1]
    path = f"{scratch}/a:{scratch}/b:/usr/bin:/bin"
    async with orch.session() as s:
        await s.write_file(f"{scratch}/a/tool-sbx", "#!/bin/sh\necho a\n", mode=0o755)
        first = await s.exec(["tool-sbx"], env={"PATH": path})
        await s.remove(f"{scratch}/a/tool-sbx")
        await s.write_file(f"{scratch}/b/tool-sbx", "#!/bin/sh\necho b\n", mode=0o755)
        second = await s.exec(["tool-sbx"], env={"PATH": path})
        await s.remove(f"{scratch}/b/tool-sbx")
        gone = await s.exec(["tool-sbx"], env={"PATH": path})
    assert (first.stdout, second.stdout) == (b"a\n", b"b\n")
    assert gone.exit_code == 127
