"""Code execution: the persistent interpreter, its results, interrupts and restarts.

The guest runs as a local process here, and so does its interpreter (this
test run's own Python); figures and memory limits need the real code-runner
image and are tested in tests/integration.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from orchestrator import CodeResult, Config, Orchestrator
from orchestrator.errors import ShellBusy
from orchestrator.results import OutputChunk
from orchestrator.tools import default_registry
from orchestrator.tools.versions import CODE_EXECUTION_TYPE, tool_type_for_model

from ..toolcalls import call


async def test_state_persists_across_calls(orch: Orchestrator) -> None:
    async with orch.session() as s:
        first = await s.run_code("import math\nx = 41\nprint('set')")
        second = await s.run_code("x + 1")
        third = await s.run_code("math.sqrt(x + 8)")
    assert (first.status, first.stdout, first.result) == ("ok", b"set\n", None)
    assert (second.status, second.result, second.return_code) == ("ok", "42", 0)
    assert third.result == "7.0"


async def test_an_exception_is_reported_and_the_interpreter_lives_on(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.run_code("y = 5")
        failed = await s.run_code("def f():\n    return 1 / 0\nf()")
        after = await s.run_code("y")
    assert failed.status == "error"
    assert failed.return_code == 1
    assert (failed.error_name, failed.error_value) == ("ZeroDivisionError", "division by zero")
    assert 'File "<cell 2>", line 2, in f' in failed.stderr_text
    assert "kernel_main" not in failed.stderr_text
    assert after.result == "5"


async def test_syntax_errors_and_system_exit(orch: Orchestrator) -> None:
    async with orch.session() as s:
        syntax = await s.run_code("def (:")
        exited = await s.run_code("import sys\nsys.exit(3)")
        alive = await s.run_code("'still here'")
    assert syntax.status == "error"
    assert syntax.error_name == "SyntaxError"
    assert "SyntaxError" in syntax.stderr_text
    assert "Traceback" not in syntax.stderr_text
    assert (exited.status, exited.return_code) == ("exit", 3)
    assert alive.result == "'still here'"


async def test_top_level_await(orch: Orchestrator) -> None:
    async with orch.session() as s:
        result = await s.run_code("import asyncio\nawait asyncio.sleep(0)\n6 * 7")
    assert result.result == "42"


async def test_output_streams_while_the_code_runs(orch: Orchestrator) -> None:
    seen: list[tuple[float, bytes]] = []

    def collect(chunk: OutputChunk) -> None:
        seen.append((trio.current_time(), chunk.data))

    async with orch.session() as s:
        start = trio.current_time()
        result = await s.run_code(
            "import time\nprint('early', flush=True)\ntime.sleep(1)\nprint('late')",
            on_output=collect,
        )
        end = trio.current_time()
    assert result.stdout == b"early\nlate\n"
    assert seen[0][1] == b"early\n"
    assert seen[0][0] - start < (end - start) - 0.5  # it arrived before the sleep ended


async def test_a_timeout_interrupts_and_keeps_the_state(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.run_code("kept = 'yes'")
        started = trio.current_time()
        slow = await s.run_code("import time\nfor _ in range(100):\n    time.sleep(0.1)", timeout=2)
        elapsed = trio.current_time() - started
        after = await s.run_code("kept")
    assert slow.status == "timeout"
    assert slow.timed_out and slow.interrupted and not slow.restarted
    assert "KeyboardInterrupt" in slow.stderr_text
    assert elapsed < 5
    assert after.result == "'yes'"


async def test_code_that_ignores_the_interrupt_gets_a_new_interpreter(
    orch: Orchestrator, fake_config: Config
) -> None:
    async with orch.session() as s:
        await s.run_code("lost = 1")
        pid = (await s.run_code("import os\nos.getpid()")).result
        stuck = await s.run_code(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
            timeout=1,
        )
        after = await s.run_code("'lost' in globals()")
        new_pid = (await s.run_code("import os\nos.getpid()")).result
    assert stuck.status == "timeout"
    assert stuck.timed_out and stuck.restarted and not stuck.interrupted
    assert after.result == "False"
    assert pid != new_pid
    assert pid is not None
    assert not os.path.exists(f"/proc/{pid}")


async def test_an_interpreter_that_exits_is_replaced(orch: Orchestrator) -> None:
    async with orch.session() as s:
        died = await s.run_code("import os\nprint('bye', flush=True)\nos._exit(7)")
        after = await s.run_code("1 + 1")
    assert died.status == "died"
    assert died.restarted
    assert died.return_code == 7
    assert died.stdout == b"bye\n"
    assert after.result == "2"


async def test_restart_resets_the_state(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await s.run_code("z = 1")
        await s.restart_interpreter()
        result = await s.run_code("'z' in globals()")
    assert result.result == "False"


async def test_files_written_under_outputs_are_listed_and_downloadable(
    orch: Orchestrator, fake_config: Config
) -> None:
    outputs = fake_config.code_execution.outputs_dir
    async with orch.session() as s:
        await s.run_code(f"open({outputs!r} + '/old.txt', 'w').write('old')")
        result = await s.run_code(
            "import os\n"
            f"os.makedirs({outputs!r} + '/sub', exist_ok=True)\n"
            f"open({outputs!r} + '/sub/data.csv', 'w').write('a,b\\n1,2\\n')"
        )
        data = await s.read_file(f"{outputs}/sub/data.csv")
    assert [(f.path, f.size) for f in result.files] == [(f"{outputs}/sub/data.csv", 8)]
    assert data == b"a,b\n1,2\n"


async def test_bash_runs_in_its_own_persistent_shell(
    orch: Orchestrator, fake_config: Config
) -> None:
    outputs = fake_config.code_execution.outputs_dir
    async with orch.session() as s:
        await s.run_code("cd /tmp && export GREETING=hi", language="bash")
        result = await s.run_code(
            f"echo $GREETING from $(pwd); echo oops >&2; echo x > {outputs}/b.txt; exit 0",
            language="bash",
        )
        failed = await s.run_code("false", language="bash")
    assert result.language == "bash"
    assert result.stdout == b"hi from /tmp\n"
    assert result.stderr == b"oops\n"
    assert [f.path for f in result.files] == [f"{outputs}/b.txt"]
    assert (failed.status, failed.return_code) == ("error", 1)


async def test_concurrent_calls_on_one_interpreter_are_refused(orch: Orchestrator) -> None:
    async with orch.session() as s:
        results: list[CodeResult] = []
        errors: list[Exception] = []

        async def run(code: str) -> None:
            try:
                results.append(await s.run_code(code))
            except ShellBusy as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "import time\ntime.sleep(0.5)")
            await trio.sleep(0.2)
            nursery.start_soon(run, "1")
    assert len(results) == 1
    assert len(errors) == 1
    assert "still running a call" in str(errors[0])


async def test_the_interpreter_goes_away_with_its_session(orch: Orchestrator) -> None:
    async with orch.session() as s:
        pid = int((await s.run_code("import os\nos.getpid()")).result or 0)
        assert Path(f"/proc/{pid}").exists()
    with trio.fail_after(5):
        while Path(f"/proc/{pid}").exists():
            await trio.sleep(0.05)


# -- the tool ----------------------------------------------------------------------


async def test_the_tool_returns_output_value_and_return_code(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await call(s, "code_execution", {"code": "n = 20"})
        err, text, _ = await call(s, "code_execution", {"code": "print('hello')\nn + 1"})
        err2, text2, _ = await call(s, "code_execution", {"code": "raise ValueError('bad')"})
    assert not err
    assert text == "hello\nresult: 21\nreturn_code: 0"
    assert not err2  # the code's own exception is output, not a tool failure
    assert "ValueError: bad" in text2
    assert text2.endswith("return_code: 1")


async def test_the_tool_reports_a_timeout_as_an_error(
    fake_config: Config, fake_backend: object
) -> None:
    fake_config.code_execution.timeout = 1
    async with Orchestrator(fake_config, backend=fake_backend) as orch:  # type: ignore[arg-type]
        async with orch.session() as s:
            err, text, _ = await call(s, "code_execution", {"code": "import time\ntime.sleep(30)"})
            err2, text2, _ = await call(s, "code_execution", {"code": "'next'"})
    assert err
    assert "execution_time_exceeded" in text
    assert "state are kept" in text
    assert not err2
    assert "result: 'next'" in text2


async def test_the_tool_restarts_on_request(orch: Orchestrator) -> None:
    async with orch.session() as s:
        await call(s, "code_execution", {"code": "v = 1"})
        err, text, _ = await call(s, "code_execution", {"restart": True})
        _, after, _ = await call(s, "code_execution", {"code": "'v' in globals()"})
    assert not err
    assert "restarted" in text
    assert "result: False" in after


@pytest.mark.parametrize(
    ("tool_input", "message"),
    [
        ({}, "give 'code'"),
        ({"code": "1", "language": "ruby"}, "language"),
        ({"code": "1", "timeout": 5}, "timeout"),
    ],
)
async def test_bad_input_is_an_error(
    orch: Orchestrator, tool_input: dict[str, object], message: str
) -> None:
    async with orch.session() as s:
        err, text, _ = await call(s, "code_execution", tool_input)
    assert err
    assert message in text


def test_the_tool_is_advertised_as_a_custom_tool() -> None:
    registry = default_registry(Config())
    params, betas = registry.definitions("claude-sonnet-4-6", ["code_execution"])
    [param] = params
    assert tool_type_for_model("code_execution", "claude-sonnet-4-6") == CODE_EXECUTION_TYPE
    assert param["type"] == "custom"
    assert param["name"] == "code_execution"
    assert set(param["input_schema"]["properties"]) == {"code", "language", "restart"}
    assert "persistent" in param["description"]
    assert betas == []


async def test_the_tool_can_be_advertised_under_another_name(
    fake_config: Config, fake_backend: object
) -> None:
    fake_config.code_execution.tool_name = "run_code"
    async with Orchestrator(fake_config, backend=fake_backend) as orch:  # type: ignore[arg-type]
        params, _ = orch.router.registry.definitions("claude-sonnet-4-6", ["code_execution"])
        async with orch.session() as s:
            renamed = await call(s, "run_code", {"code": "2 + 2"})
            original = await call(s, "code_execution", {"code": "3 + 3"})
    assert params[0]["name"] == "run_code"
    assert "result: 4" in renamed[1]
    assert "result: 6" in original[1]


async def test_output_written_between_calls_arrives_with_the_next_call(orch: Orchestrator) -> None:
    async with orch.session() as s:
        first = await s.run_code(
            "import threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.3), print('later', flush=True))).start()"
        )
        await trio.sleep(1)
        second = await s.run_code("print('now')")
    assert first.stdout == b""
    assert second.stdout == b"later\nnow\n"
