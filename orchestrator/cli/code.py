"""``sbx exec-code``: safe code execution -- a file of code in a fresh sandbox, results saved here.

The code runs in the sandbox's interpreter (so a final expression's value is
printed, like ``python -i`` would), its output passes through as it happens,
and the figures it draws and the files it writes under the outputs directory
are saved to a local folder.  The sandbox gets no memory store and no network
unless asked.  Presentation only: the work is ``Session.run_code``.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.cli._args import memory_size
from orchestrator.cli.parsing import runs_a_command
from orchestrator.cli.run import EXIT_TIMEOUT
from orchestrator.config import Config
from orchestrator.errors import SessionClosed
from orchestrator.results import OutputChunk

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["EXIT_OUT_OF_MEMORY", "register"]

EXIT_OUT_OF_MEMORY = 137
"""The exit status when the code ran out of memory (as a process killed by SIGKILL)."""
_CHUNK = 8 << 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "exec-code",
        help="run a file of code in a fresh sandbox; save its figures and files",
        description="Run FILE (Python, or bash for *.sh) in a fresh sandbox. Output passes "
        "through; the value of a final expression is printed; figures and files written under "
        "the outputs directory are saved to --out. The exit status is the code's (1 for an "
        "exception, 124 on timeout, 137 when out of memory), 125 when sbx itself fails.",
    )
    parser.add_argument("file", metavar="FILE", help="the code to run; - reads it from stdin")
    parser.add_argument("--image", help="image, short name or full (default: code-runner)")
    parser.add_argument(
        "--timeout", type=float, help="seconds before the code is interrupted (default: config)"
    )
    parser.add_argument(
        "--language",
        choices=["python", "bash"],
        help="the code's language (default: bash for *.sh, else python)",
    )
    parser.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help="where figures and output files go (default: ./sbx-output/<time>-<session>)",
    )
    parser.add_argument(
        "--put",
        action="append",
        default=[],
        metavar="LOCAL[:REMOTE]",
        help="copy a local file into the sandbox first (default REMOTE: /workspace/NAME)",
    )
    parser.add_argument(
        "--memory",
        "-m",
        type=memory_size,
        help="memory limit, at least 16m, e.g. 512m, 2g (default: sandbox.memory)",
    )
    parser.add_argument("--cpus", type=float, help="CPU limit, e.g. 0.5, 2 (default: sandbox.cpus)")
    parser.add_argument("--network", action="store_true", help="give the sandbox network access")
    parser.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    parser.set_defaults(handler=handle, quiet_logs=True, group_parser=parser)
    runs_a_command(parser)


def handle(args: argparse.Namespace, config: Config) -> int:
    if args.file == "-":
        code = sys.stdin.read()
        name = "stdin"
    else:
        try:
            code = Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            args.group_parser.error(f"cannot read {args.file}: {exc.strerror or exc}")
        except UnicodeDecodeError:
            args.group_parser.error(f"{args.file} is not UTF-8 text")
        name = Path(args.file).name
    language = args.language or ("bash" if name.endswith(".sh") else "python")
    puts: list[tuple[Path, str]] = []
    for item in args.put:
        local, sep, remote = item.partition(":")
        path = Path(local)
        if not path.is_file():
            args.group_parser.error(f"--put {item}: {local} is not a file")
        puts.append((path, remote if sep else f"/workspace/{path.name}"))
    options: dict[str, Any] = {"memories": False}
    if args.image:
        options["image"] = args.image
    if args.network:
        options["network"] = True
    if args.memory:
        options["memory"] = args.memory
    if args.cpus:
        options["cpus"] = args.cpus
    return trio.run(
        exec_code, config, code, language, options, args.timeout, args.out, puts, args.json
    )


async def exec_code(
    config: Config,
    code: str,
    language: str,
    options: dict[str, Any],
    timeout: float | None,
    out: str | None,
    puts: list[tuple[Path, str]],
    as_json: bool,
) -> int:
    from orchestrator.runtime import Orchestrator

    def passthrough(chunk: OutputChunk) -> None:
        target = sys.stdout.buffer if chunk.stream == "stdout" else sys.stderr.buffer
        target.write(chunk.data)
        target.flush()

    config = config.model_copy(update={"reap_orphans": False})
    orch = Orchestrator(config, handle_signals=True)
    code_status = 1
    try:
        async with orch, orch.session(**options) as session:
            for local, remote in puts:
                await session.write_file(remote, await trio.Path(local).read_bytes())
            result = await session.run_code(
                code,
                language="bash" if language == "bash" else "python",
                timeout=timeout,
                on_output=None if as_json else passthrough,
            )
            folder = (
                Path(out)
                if out
                else Path("sbx-output") / (time.strftime("%Y%m%d-%H%M%S") + f"-{session.id}")
            )
            saved = await _save(
                session,
                result.figures,
                [f.path for f in result.files],
                folder,
                config.code_execution.outputs_dir,
            )
            code_status = _exit_status(result.status, result.return_code)
            if as_json:
                summary = {
                    "session": session.id,
                    "status": result.status,
                    "return_code": result.return_code,
                    "stdout": result.stdout_text,
                    "stderr": result.stderr_text,
                    "result": result.result,
                    "timed_out": result.timed_out,
                    "restarted": result.restarted,
                    "oom_killed": result.oom_killed,
                    "duration": round(result.duration, 4),
                    "saved": [str(path) for path in saved],
                    "files": [f.model_dump() for f in result.files],
                }
                print(json.dumps(summary))
            else:
                if result.result is not None:
                    print(result.result, flush=True)
                _report(result.status, timeout or config.code_execution.timeout, saved, folder)
    except SessionClosed:
        if orch.signalled is None:
            raise
    if orch.signalled is not None:
        return 128 + orch.signalled
    return code_status


def _exit_status(status: str, return_code: int) -> int:
    if status == "timeout":
        return EXIT_TIMEOUT
    if status == "oom":
        return EXIT_OUT_OF_MEMORY
    return return_code


def _report(status: str, timeout: float, saved: list[Path], folder: Path) -> None:
    notes = {
        "timeout": f"sbx: the code ran past its {timeout:g} s timeout and was stopped "
        "(--timeout sets it)",
        "oom": "sbx: the code ran out of memory (--memory raises the limit)",
        "died": "sbx: the interpreter exited or crashed",
    }
    if status in notes:
        print(notes[status], file=sys.stderr)
    if saved:
        print(f"sbx: saved {len(saved)} file(s) to {folder}/", file=sys.stderr)


async def _save(
    session: Session, figures: list[bytes], files: list[str], folder: Path, outputs_dir: str
) -> list[Path]:
    """Write the figures and download the output files into ``folder``; the paths written."""
    if not figures and not files:
        return []
    await trio.Path(folder).mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for number, png in enumerate(figures, 1):
        target = folder / f"figure-{number}.png"
        await trio.Path(target).write_bytes(png)
        saved.append(target)
    for remote in files:
        relative = posixpath.relpath(remote, outputs_dir)
        if relative.startswith(".."):
            relative = posixpath.basename(remote)
        target = folder / relative
        await trio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        await _download(session, remote, target)
        saved.append(target)
    return saved


async def _download(session: Session, remote: str, target: Path) -> None:
    """Copy a sandbox file of any size, a chunk at a time."""
    offset = 0
    async with await trio.open_file(target, "wb") as handle:
        while True:
            chunk = await session.read_file(remote, offset=offset, length=_CHUNK)
            if not chunk:
                return
            await handle.write(chunk)
            offset += len(chunk)
            if len(chunk) < _CHUNK:
                return
