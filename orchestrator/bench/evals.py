"""``sbx bench --evals``: an evaluation run against the same tasks as ``docker run --rm`` scripts.

N short scripted tasks (a command and a check of its output) run as a suite
at concurrency C -- a fresh sandbox each, the solve and the grader through
the channel -- and, in the same run, as N ``docker run --rm`` commands of
the same image at the same concurrency, each checked by the same test.  The
figure is the ratio of the two wall times (target: within 1.3x), printed
with the sandboxes left behind by either (target: none).  The two are
measured alternately when ``rounds`` > 1, so drift on a shared machine hits
both alike.

Must not: judge absolute times, or leave a sandbox behind.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from orchestrator.config import Config

__all__ = ["TARGET_RATIO", "collect_evals", "format_evals"]

TARGET_RATIO = 1.3
LABEL = "sbx-bench"


def _script(index: int) -> str:
    return f"echo $(( {index} * {index} ))"


def _suite_text(tasks: int, image: str, label: str) -> str:
    lines = [
        "name: bench",
        f"defaults: {{image: {image}, timeout: 120, labels: {{{LABEL}: {label}}}}}",
        "tasks:",
    ]
    for index in range(tasks):
        lines.append(
            f"  - {{id: t{index}, solve: [{{exec: '{_script(index)}'}}], "
            f"graders: [{{type: output_matches, pattern: '^{index * index}$'}}]}}"
        )
    return "\n".join(lines) + "\n"


async def _docker_runs(
    docker: str, image: str, tasks: int, concurrency: int, label: str
) -> tuple[float, int]:
    """Wall seconds of ``tasks`` ``docker run --rm`` scripts, ``concurrency`` at once; passes."""
    slots = trio.Semaphore(concurrency)
    passed = 0

    async def one(index: int) -> None:
        nonlocal passed
        try:
            argv = [
                docker,
                "run",
                "--rm",
                "--network",
                "none",
                "--label",
                f"{LABEL}={label}",
                "--entrypoint",
                "sh",
                image,
                "-c",
                _script(index),
            ]
            with trio.move_on_after(120):
                done = await trio.run_process(
                    argv, capture_stdout=True, capture_stderr=True, check=False
                )
                if done.returncode == 0 and done.stdout.strip() == str(index * index).encode():
                    passed += 1
        finally:
            slots.release()

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(tasks):
            await slots.acquire()
            nursery.start_soon(one, index)
    return time.perf_counter() - started, passed


async def _suite_run(
    config: Config, image: str, tasks: int, concurrency: int, label: str
) -> tuple[float, int]:
    """Wall seconds of the suite (start to every sandbox removed) and the trials that passed."""
    from orchestrator.evals.loading import load_suite
    from orchestrator.evals.run_dir import EvalRunDir
    from orchestrator.evals.runner import run_suite
    from orchestrator.runtime import Orchestrator

    with tempfile.TemporaryDirectory(prefix="sbx-bench-evals-") as scratch:
        path = Path(scratch) / "suite.yaml"
        path.write_text(_suite_text(tasks, image, label))
        loaded = load_suite(path)
        started = time.perf_counter()
        async with Orchestrator(config.model_copy(update={"reap_orphans": False})) as orch:
            result = await run_suite(
                orch, loaded, EvalRunDir(Path(scratch) / "run"), concurrency=concurrency
            )
        seconds = time.perf_counter() - started
    return seconds, result.count("passed")


async def _leaks(config: Config, label: str, within: float = 10.0) -> int:
    """Sandboxes of this benchmark still on the engine after ``within`` seconds."""
    from orchestrator.backends.registry import make_backend

    backend = make_backend(config)
    try:
        deadline = trio.current_time() + within
        while True:
            left = await backend.list({LABEL: label})
            if not left or trio.current_time() >= deadline:
                return len(left)
            await trio.sleep(0.25)
    finally:
        await backend.aclose()


async def collect_evals(
    config: Config,
    tasks: int = 100,
    concurrency: int = 8,
    image: str | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    docker = shutil.which("docker")
    if docker is None:
        raise RuntimeError(
            "sbx bench --evals compares against `docker run` and needs the docker CLI"
        )
    image_name = config.image_name(image or config.sandbox.image)
    ours: list[float] = []
    theirs: list[float] = []
    passed = {"sbx": 0, "docker": 0}
    label = uuid.uuid4().hex[:12]
    for _ in range(max(1, rounds)):
        seconds, ok = await _docker_runs(docker, image_name, tasks, concurrency, label)
        theirs.append(seconds)
        passed["docker"] += ok
        seconds, ok = await _suite_run(config, image_name, tasks, concurrency, label)
        ours.append(seconds)
        passed["sbx"] += ok
    leaks = await _leaks(config, label)
    sbx_s, docker_s = min(ours), min(theirs)
    ratio = round(sbx_s / docker_s, 3)
    return {
        "image": image_name,
        "tasks": tasks,
        "concurrency": concurrency,
        "rounds": max(1, rounds),
        "sbx_eval_s": [round(s, 3) for s in ours],
        "docker_run_s": [round(s, 3) for s in theirs],
        "sbx_passed": passed["sbx"],
        "docker_passed": passed["docker"],
        "ratio": ratio,
        "leaks": leaks,
        "targets": {
            "ratio": {"target": TARGET_RATIO, "met": ratio <= TARGET_RATIO},
            "leaks": {"target": 0, "met": leaks == 0},
        },
    }


def format_evals(report: dict[str, Any]) -> str:
    runs = report["rounds"] * report["tasks"]
    lines = [
        f"sbx bench --evals — {report['tasks']} scripted tasks at concurrency "
        f"{report['concurrency']}, image {report['image']}, {report['rounds']} round(s)",
        f"  sbx eval (a fresh sandbox per task)   {min(report['sbx_eval_s']):8.2f} s   "
        f"({report['sbx_passed']}/{runs} passed)",
        f"  docker run --rm scripts               {min(report['docker_run_s']):8.2f} s   "
        f"({report['docker_passed']}/{runs} passed)",
        f"  ratio sbx / docker run                {report['ratio']:8.2f}x  "
        f"(target ≤ {TARGET_RATIO}x: {'ok' if report['targets']['ratio']['met'] else 'MISSED'})",
        f"  sandboxes left behind                 {report['leaks']:8d}   "
        f"({'ok' if report['leaks'] == 0 else 'LEAKED'})",
    ]
    return "\n".join(lines)
