"""Persistent named shells."""

from __future__ import annotations

import pytest
import trio

from orchestrator import Orchestrator
from orchestrator.errors import ShellBusy


async def test_cwd_variables_and_functions_persist(orch: Orchestrator, fake_config) -> None:
    scratch = fake_config.sandbox.allowed_roots[1]
    async with orch.session() as s:
        first = await s.shell(f"cd {scratch} && export A=1 && B=2 && greet() {{ echo hi $1; }}")
        second = await s.shell("pwd; echo $A $B; greet you")
    assert first.exit_code == 0
    assert second.stdout == f"{scratch}\n1 2\nhi you\n".encode()


async def test_named_shells_are_independent(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.shell("export WHO=a", name="a")
        await s.shell("export WHO=b", name="b")
        assert (await s.shell("echo $WHO", name="a")).stdout == b"a\n"
        assert (await s.shell("echo $WHO", name="b")).stdout == b"b\n"


async def test_exit_status_output_without_newline_and_stderr(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.shell("printf no-newline; echo oops >&2; false")
    assert (r.exit_code, r.stdout, r.stderr) == (1, b"no-newline", b"oops\n")


async def test_commands_cannot_read_the_control_pipe(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.shell("cat; echo after-cat")
        again = await s.shell("echo alive")
    assert r.stdout == b"after-cat\n"
    assert again.stdout == b"alive\n"


async def test_syntax_error_leaves_the_shell_usable(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.shell("export KEEP=yes")
        bad = await s.shell("if then fi (")
        good = await s.shell("echo $KEEP")
    assert bad.exit_code != 0
    assert b"syntax error" in bad.stderr
    assert good.stdout == b"yes\n"


async def test_timeout_kills_the_command_but_keeps_the_shell(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.shell("export KEEP=yes")
        r = await s.shell("sleep 300", timeout=0.5)
        after = await s.shell("echo $KEEP")
    assert r.timed_out
    assert not r.shell_exited
    assert after.stdout == b"yes\n"
    assert not after.shell_restarted


async def test_a_busy_loop_in_the_shell_itself_gets_the_shell_replaced(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.shell("export KEEP=yes")
        r = await s.shell("while :; do :; done", timeout=0.3)
        after = await s.shell("echo ${KEEP:-gone}")
    assert r.timed_out
    assert r.shell_exited
    assert after.shell_restarted
    assert after.stdout == b"gone\n"


async def test_exit_ends_the_shell_and_the_next_command_gets_a_new_one(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.shell("exit 7")
        after = await s.shell("echo new")
    assert r.exit_code == 7
    assert r.shell_exited
    assert after.shell_restarted
    assert after.stdout == b"new\n"


async def test_restart_resets_state(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.shell("export A=1")
        await s.restart_shell()
        r = await s.shell("echo ${A:-unset}")
    assert r.stdout == b"unset\n"


async def test_a_second_command_on_a_busy_shell_is_refused(orch: Orchestrator) -> None:
    async with orch.session() as s, trio.open_nursery() as nursery:
        nursery.start_soon(s.shell, "sleep 1")
        await trio.sleep(0.2)
        with pytest.raises(ShellBusy, match="still running"):
            await s.shell("echo hi")


async def test_marker_lookalikes_in_output_pass_through(orch: Orchestrator) -> None:
    async with orch.session() as s:
        r = await s.shell(r"printf '\036SBX not ours\036\n'; head -c 200000 /dev/zero | tr '\0' x")
    assert r.stdout.startswith(b"\x1eSBX not ours\x1e\n")
    assert len(r.stdout) == len(b"\x1eSBX not ours\x1e\n") + 200000
