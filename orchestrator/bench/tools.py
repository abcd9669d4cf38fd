"""``sbx bench --tools``: the editor, code execution and memory tools, end to end.

Each figure is a whole tool call through the router (``Session.run_tools``)
on a real sandbox, printed beside baselines taken in the same run on the same
sandbox, since this machine is shared and absolute times drift:

* ``str_replace`` on a 1 MB file, against a protocol ping and against moving
  that file out of the sandbox and back (what an editor working on the host
  side would pay before doing anything);
* ``code_execution`` of ``1+1`` on a warm interpreter, against the ping and
  against ``python3 -c '1+1'`` through exec (a fresh interpreter per call).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from orchestrator.bench.timing import measure, percentile
from orchestrator.config import Config

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["TOOL_TARGETS", "collect_tools", "format_tools"]

TOOL_TARGETS = {"str_replace_1mb_p50_ms": 20.0, "code_1plus1_p50_ms": 5.0}
FILE_BYTES = 1 << 20
_EDITOR = "str_replace_based_edit_tool"


def _one_megabyte() -> bytes:
    line = "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghij\n"
    body = line * (FILE_BYTES // len(line))
    middle = len(body) // 2
    middle = body.index("\n", middle) + 1
    return (body[:middle] + "MARKER-A\n" + body[middle:]).encode()


def _tool_call(name: str, tool_input: dict[str, Any], counter: list[int]) -> list[dict[str, Any]]:
    counter[0] += 1
    return [
        {"type": "tool_use", "id": f"toolu_bench{counter[0]}", "name": name, "input": tool_input}
    ]


async def _checked(session: Session, blocks: list[dict[str, Any]], types: dict[str, str]) -> None:
    [result] = await session.run_tools(blocks, tool_types=types)
    if result.get("is_error"):
        raise RuntimeError(f"benchmark call failed: {result.get('content')}")


async def collect_tools(
    config: Config, iterations: int, image: str | None = None
) -> dict[str, Any]:
    from orchestrator.runtime import Orchestrator

    report: dict[str, Any] = {"iterations": iterations}
    counter = [0]
    config = config.model_copy(update={"reap_orphans": False})
    async with Orchestrator(config) as orch, orch.session(image=image, memories=False) as session:
        report["image"] = session.image
        path = "/workspace/bench-1mb.txt"
        await session.write_file(path, _one_megabyte())
        markers = ["MARKER-A", "MARKER-B"]

        def editor_call(tool: str, tool_type: str) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                old, new = markers
                markers.reverse()
                blocks = _tool_call(
                    tool,
                    {"command": "str_replace", "path": path, "old_str": old, "new_str": new},
                    counter,
                )
                await _checked(session, blocks, {tool: tool_type})

            return call

        async def transfer() -> None:
            data = await session.read_file(path)
            await session.write_file(path, data)

        code_block = {"code": "1+1"}

        async def code_call() -> None:
            await _checked(session, _tool_call("code_execution", code_block, counter), {})

        async def run_code() -> None:
            result = await session.run_code("1+1")
            if result.result != "2":
                raise RuntimeError(f"1+1 gave {result.result!r}: {result.stderr_text}")

        async def fresh_python() -> None:
            result = await session.exec(["python3", "-c", "1+1"])
            if result.exit_code != 0:
                raise RuntimeError(f"python3 -c failed: {result.stderr_text}")

        figures = {
            "ping": await measure(session.ping, iterations),
            "transfer_1mb": await measure(transfer, max(10, iterations // 4), warmup=3),
            "str_replace_1mb": await measure(
                editor_call(_EDITOR, "text_editor_20250728"), iterations
            ),
            "str_replace_1mb_undo": await measure(
                editor_call("str_replace_editor", "text_editor_20250124"), iterations
            ),
            "code_1plus1": await measure(code_call, iterations),
            "run_code_1plus1": await measure(run_code, iterations),
            "python3_c": await measure(fresh_python, max(10, iterations // 4), warmup=2),
        }
    for name, samples in figures.items():
        report[f"{name}_p50_ms"] = round(statistics.median(samples), 3)
        report[f"{name}_p95_ms"] = round(percentile(samples, 0.95), 3)
    report["str_replace_vs_transfer"] = round(
        report["str_replace_1mb_p50_ms"] / report["transfer_1mb_p50_ms"], 2
    )
    report["python3_c_vs_code"] = round(
        report["python3_c_p50_ms"] / report["code_1plus1_p50_ms"], 1
    )
    report["targets"] = {
        key: {"target": target, "met": report[key] <= target}
        for key, target in TOOL_TARGETS.items()
    }
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return report


def format_tools(report: dict[str, Any]) -> str:
    lines = [
        f"sbx bench --tools — image {report['image']}, {report['iterations']} calls per figure "
        "(tool calls go through the router)"
    ]

    def row(label: str, key: str) -> None:
        lines.append(
            f"  {label:<46} p50 {report[key + '_p50_ms']:>8.3f} ms   "
            f"p95 {report[key + '_p95_ms']:>8.3f} ms"
        )

    row("protocol ping (baseline)", "ping")
    row("read + write back 1 MB (baseline)", "transfer_1mb")
    row("str_replace on 1 MB (text_editor_20250728)", "str_replace_1mb")
    row("str_replace on 1 MB, with undo (20250124)", "str_replace_1mb_undo")
    ratio = report["str_replace_vs_transfer"]
    lines.append(f"  str_replace / moving the file out and back      {ratio:.2f}x")
    row("python3 -c '1+1' through exec (baseline)", "python3_c")
    row("code_execution 1+1, warm interpreter", "code_1plus1")
    row("Session.run_code 1+1 (no router)", "run_code_1plus1")
    lines.append(
        f"  fresh python3 / warm code_execution (p50)       {report['python3_c_vs_code']:.1f}x"
    )
    met = [
        f"{key} {'ok' if v['met'] else 'MISSED'} (target {v['target']} ms)"
        for key, v in report["targets"].items()
    ]
    lines.append("  targets: " + ", ".join(met))
    return "\n".join(lines)
