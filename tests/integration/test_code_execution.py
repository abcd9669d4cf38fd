"""Code execution in real code-runner sandboxes: state, figures, timeouts, memory, files."""

from __future__ import annotations

import base64
import struct
import zlib

import trio

from orchestrator import Config, Orchestrator

from ..toolcalls import call
from .conftest import IMAGE


def decode_png(data: bytes) -> tuple[int, int]:
    """Check every chunk's CRC and inflate the pixels; return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row = 1 + (width * channels * depth + 7) // 8
    assert len(zlib.decompress(idat)) == row * height
    return width, height


async def test_state_persists_and_site_packages_are_there(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        await s.run_code("import numpy as np\na = np.arange(10)")
        result = await s.run_code("import os\nprint(os.getuid(), os.getcwd())\nint(a.sum())")
    assert result.stdout == b"1000 /workspace\n"
    assert result.result == "45"


async def test_a_matplotlib_figure_comes_back_as_a_png_image(orch: Orchestrator) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.plot([1, 2, 3], [1, 4, 9])\n"
        "plt.show()\n"
        "print('drawn')"
    )
    async with orch.session(image=IMAGE, memories=False) as s:
        err, text, block = await call(s, "code_execution", {"code": code})
        again = await s.run_code("import matplotlib.pyplot as plt\nlen(plt.get_fignums())")
    assert not err, text
    assert "drawn" in text
    assert "[1 figure(s) attached as images]" in text
    assert "cannot be shown" not in text  # plt.show() under Agg stays quiet
    images = [part for part in block["content"] if part["type"] == "image"]
    assert len(images) == 1
    assert images[0]["source"]["media_type"] == "image/png"
    width, height = decode_png(base64.b64decode(images[0]["source"]["data"]))
    assert 200 < width < 600
    assert 150 < height < 450
    assert again.result == "0"  # captured figures are closed


async def test_a_long_loop_is_interrupted_at_the_timeout_and_state_survives(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        await s.run_code("counter = 0")
        started = trio.current_time()
        result = await s.run_code(
            "import time\nend = time.time() + 10\nwhile time.time() < end:\n    counter += 1",
            timeout=2,
        )
        elapsed = trio.current_time() - started
        after = await s.run_code("counter > 0")
    assert result.status == "timeout"
    assert result.timed_out
    assert not result.restarted
    assert 1.9 < elapsed < 5
    assert after.result == "True"


async def test_code_deaf_to_interrupts_is_stopped_by_a_restart(config: Config) -> None:
    config.code_execution.timeout = 2
    async with Orchestrator(config) as orch, orch.session(image=IMAGE, memories=False) as s:
        err, text, _ = await call(
            s,
            "code_execution",
            {"code": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile 1: pass"},
        )
        after = await s.run_code("1 + 1")
    assert err
    assert "did not stop when interrupted, so the interpreter was restarted" in text
    assert after.result == "2"


async def test_running_out_of_memory_is_reported_and_the_next_call_works(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False, memory="256m") as s:
        await s.run_code("before = 1")
        # More than the sandbox's whole limit (256m, plus its mounts, which follow memory).
        err, text, _ = await call(s, "code_execution", {"code": "hog = b'x' * (1 << 30)"})
        after = await s.run_code("'before' in globals(), 6 * 7")
        alive = await s.exec("echo guest alive")
    assert err, text
    assert "out_of_memory" in text
    assert "restarted" in text
    assert after.result == "(False, 42)"
    assert alive.stdout == b"guest alive\n"


async def test_a_child_out_of_memory_is_reported_even_when_the_run_then_times_out(
    config: Config,
) -> None:
    # A child meets the limit, then the interpreter ignores the interrupt and is
    # replaced at the timeout: the memory kill is still reported, beside the timeout.
    config.code_execution.timeout = 3
    code = (
        "import signal, subprocess\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "subprocess.run(['python3', '-c', 'hog = b\"x\" * (1 << 30)'])\n"
        "while 1: pass"
    )
    async with Orchestrator(config) as orch:
        async with orch.session(image=IMAGE, memories=False, memory="256m") as s:
            result = await s.run_code(code)
            err, text, _ = await call(s, "code_execution", {"code": code})
            after = await s.run_code("6 * 7")
    assert result.timed_out and result.restarted
    assert result.oom_killed
    assert err
    assert "out_of_memory" in text and "timed out" in text, text
    assert after.result == "42"


async def test_output_files_are_listed_and_downloadable(orch: Orchestrator) -> None:
    code = (
        "import pandas as pd\n"
        "pd.DataFrame({'a': [1, 2]}).to_csv('/workspace/outputs/table.csv', index=False)\n"
        "open('/workspace/scratch.txt', 'w').write('not an output')"
    )
    async with orch.session(image=IMAGE, memories=False) as s:
        err, text, _ = await call(s, "code_execution", {"code": code})
        data = await s.read_file("/workspace/outputs/table.csv")
    assert not err, text
    assert "files written under /workspace/outputs:\n  /workspace/outputs/table.csv (6B)" in text
    assert "scratch" not in text
    assert data == b"a\n1\n2\n"


async def test_bash_language(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        await call(s, "code_execution", {"code": "cd /tmp; X=7", "language": "bash"})
        err, text, _ = await call(
            s, "code_execution", {"code": "echo $X $(pwd); exit 3", "language": "bash"}
        )
    assert not err
    assert text.startswith("7 /tmp\n")
    assert "the code ended the shell" in text
    assert text.endswith("return_code: 3")


async def test_calls_reuse_one_interpreter(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        first = await s.run_code("import os\nos.getpid()")
        results = [await s.run_code("import os\nos.getpid()") for _ in range(20)]
    assert {r.result for r in results} == {first.result}
