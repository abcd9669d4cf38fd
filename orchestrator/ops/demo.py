"""``sbx demo``: several sandboxed jobs at once, each in its own fresh session.

It exercises what a first-time user wants to see working -- Python with the
scientific stack, a C toolchain, git, files in and out, a persistent shell,
and the isolation (no network, not root) -- and prints one line per job.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from rich.console import Console
from rich.table import Table

from orchestrator.config import Config
from orchestrator.session import Session

__all__ = ["run_demo"]


@dataclass
class JobResult:
    name: str
    ok: bool
    summary: str
    seconds: float
    session_id: str = ""


Job = Callable[[Session], Awaitable[tuple[bool, str]]]


async def _primes(s: Session) -> tuple[bool, str]:
    r = await s.exec(
        [
            "python3",
            "-c",
            "n=200000; s=bytearray([1])*n; s[0:2]=b'\\0\\0'\n"
            "for i in range(2,int(n**.5)+1):\n"
            "    if s[i]: s[i*i::i]=bytearray(len(s[i*i::i]))\n"
            "print(sum(s))",
        ],
        timeout=60,
    )
    return r.stdout.strip() == b"17984", f"{r.stdout_text.strip()} primes below 200000"


async def _numpy(s: Session) -> tuple[bool, str]:
    r = await s.exec(
        [
            "python3",
            "-c",
            "import numpy as np; rng=np.random.default_rng(0); a=rng.random((300,300)); "
            "b=rng.random(300); x=np.linalg.solve(a,b); print(f'{np.abs(a@x-b).max():.1e}')",
        ],
        timeout=60,
    )
    ok = r.exit_code == 0 and float(r.stdout or b"1") < 1e-9
    return ok, f"300x300 solve, residual {r.stdout_text.strip() or r.stderr_text[-80:]}"


async def _pandas(s: Session) -> tuple[bool, str]:
    r = await s.exec(
        [
            "python3",
            "-c",
            "import pandas as pd, numpy as np; df=pd.DataFrame({'k':np.arange(100000)%7,"
            "'v':np.arange(100000)}); print(df.groupby('k').v.sum().idxmax())",
        ],
        timeout=60,
    )
    expected = max(range(7), key=lambda k: sum(range(k, 100000, 7)))
    ok = r.stdout.strip() == str(expected).encode()
    return ok, f"group-by over 100k rows → key {r.stdout_text.strip() or r.stderr_text[-80:]}"


async def _matplotlib(s: Session) -> tuple[bool, str]:
    r = await s.exec(
        [
            "python3",
            "-c",
            "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; "
            "plt.plot([1,3,2]); plt.savefig('/workspace/chart.png')",
        ],
        timeout=90,
    )
    if r.exit_code != 0:
        return False, r.stderr_text[-120:]
    png = await s.read_file("/workspace/chart.png")
    return png.startswith(b"\x89PNG"), f"chart.png, {len(png)} bytes, read back over the channel"


async def _c_program(s: Session) -> tuple[bool, str]:
    await s.write_file(
        "/workspace/hello.c",
        '#include <stdio.h>\nint main(void){printf("hello from C\\n");return 0;}\n',
    )
    r = await s.exec(
        "gcc -O2 -o /workspace/hello /workspace/hello.c && /workspace/hello", timeout=90
    )
    return r.stdout == b"hello from C\n", (r.stdout_text or r.stderr_text).strip()[-80:]


async def _git(s: Session) -> tuple[bool, str]:
    r = await s.exec(
        "cd /workspace && git init -q repo && cd repo && echo hi > f && git add f && "
        "git -c user.name=sbx -c user.email=sbx@example.invalid commit -qm first && "
        "git log --oneline | wc -l",
        timeout=60,
    )
    return r.stdout.strip() == b"1", f"repo with {r.stdout_text.strip() or '?'} commit"


async def _shell(s: Session) -> tuple[bool, str]:
    await s.shell("mkdir -p /tmp/state && cd /tmp/state && export COUNTER=41")
    r = await s.shell("echo $((COUNTER + 1)) in $(pwd)")
    return r.stdout == b"42 in /tmp/state\n", f"persistent shell: {r.stdout_text.strip()}"


async def _isolation(s: Session) -> tuple[bool, str]:
    r = await s.exec(
        "id -u; curl -s -m 3 http://deb.debian.org >/dev/null && echo online || echo offline; "
        "touch /usr/x 2>/dev/null && echo rw-root || echo ro-root",
        timeout=30,
    )
    lines = r.stdout_text.split()
    ok = len(lines) == 3 and lines[0] != "0" and lines[1:] == ["offline", "ro-root"]
    return ok, f"uid {lines[0] if lines else '?'}, {', '.join(lines[1:])}"


JOBS: dict[str, Job] = {
    "python": _primes,
    "numpy": _numpy,
    "pandas": _pandas,
    "matplotlib": _matplotlib,
    "c toolchain": _c_program,
    "git": _git,
    "shell": _shell,
    "isolation": _isolation,
}


async def run_demo(config: Config, image: str | None = None) -> int:
    from orchestrator.runtime import Orchestrator

    console = Console()
    results: list[JobResult] = []
    started = time.perf_counter()
    console.print(f"[bold]sbx demo[/]: {len(JOBS)} jobs, each in its own sandbox, all at once")

    orch = Orchestrator(config, handle_signals=True)
    async with orch:

        async def run(name: str, job: Job) -> None:
            t0 = time.perf_counter()
            session_id = ""
            try:
                async with orch.session(image=image, memories=False) as s:
                    session_id = s.id
                    ok, summary = await job(s)
            except Exception as exc:  # one failed job must not hide the others
                ok, summary = False, f"{type(exc).__name__}: {exc}"
            results.append(JobResult(name, ok, summary, time.perf_counter() - t0, session_id))
            mark = "[green]ok[/]" if ok else "[red]FAILED[/]"
            console.print(f"  {mark} {name} ({time.perf_counter() - t0:.1f} s)")

        async with trio.open_nursery() as nursery:
            for name, job in JOBS.items():
                nursery.start_soon(run, name, job)
    wall = time.perf_counter() - started

    table = Table(title="results")
    for column in ("job", "session", "seconds", "result"):
        table.add_column(column)
    for result in sorted(results, key=lambda r: list(JOBS).index(r.name)):
        style = "" if result.ok else "red"
        table.add_row(
            result.name, result.session_id, f"{result.seconds:.1f}", result.summary, style=style
        )
    console.print(table)
    total = sum(r.seconds for r in results)
    left = await _sandboxes_left(config, orch.supervisor.identity)
    console.print(
        f"{sum(r.ok for r in results)}/{len(results)} jobs ok in {wall:.1f} s wall "
        f"({total:.1f} s of sandbox time, run in parallel); "
        + ("no sandbox left behind" if not left else f"[red]{left} sandbox(es) left behind[/]")
    )
    return 0 if all(r.ok for r in results) and not left else 1


async def _sandboxes_left(config: Config, supervisor: str) -> int:
    """Sandboxes this run's supervisor still has on the engine (there should be none)."""
    from orchestrator.backends.base import LABEL_SUPERVISOR
    from orchestrator.backends.registry import make_backend

    backend = make_backend(config)
    try:
        return len(await backend.list({LABEL_SUPERVISOR: supervisor}))
    finally:
        await backend.aclose()
