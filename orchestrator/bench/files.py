"""``sbx bench --files``: a 100 MiB file into and out of a sandbox, against ``docker cp``.

Our figures stream the file through the session's channel (``write_file``
from an async iterable of the local file's chunks, ``read_file_stream`` into
a local file); the baseline is ``docker cp`` of the same file into and out of
a plain container of the same image, taken in the same run on this shared
machine.  ``docker cp`` needs a writable root and no tmpfs target, which is
why the baseline has a container of its own.  Each figure is the median of
``rounds`` copies, with the throughput in MiB/s.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from orchestrator.config import Config

__all__ = ["collect_files", "format_files"]

SIZE = 100 << 20
_CHUNK = 1 << 20


async def _timed(fn: Callable[[], Awaitable[None]], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


async def _docker(*args: str) -> None:
    await trio.run_process(["docker", *args], capture_stdout=True, capture_stderr=True)


async def collect_files(config: Config, rounds: int, image: str | None = None) -> dict[str, Any]:
    from orchestrator.runtime import Orchestrator

    session_config = config.model_copy(deep=True, update={"reap_orphans": False})
    session_config.session.file_size_limit = max(config.session.file_size_limit, 2 * SIZE)
    report: dict[str, Any] = {"rounds": rounds, "bytes": SIZE}
    with tempfile.TemporaryDirectory(prefix="sbx-bench-files-") as folder:
        source, back = Path(folder, "in.bin"), Path(folder, "out.bin")
        await trio.Path(source).write_bytes(os.urandom(SIZE))
        digest = hashlib.sha256(await trio.Path(source).read_bytes()).hexdigest()

        async def chunks() -> AsyncIterator[bytes]:
            async with await trio.open_file(source, "rb") as handle:
                while chunk := await handle.read(_CHUNK):
                    yield chunk

        async with (
            Orchestrator(session_config) as orch,
            orch.session(image=image, memories=False) as session,
        ):
            report["image"] = session.image

            async def write() -> None:
                await session.write_file("/workspace/bench.bin", chunks())

            async def read() -> None:
                async with (
                    await trio.open_file(back, "wb") as out,
                    session.read_file_stream("/workspace/bench.bin") as got,
                ):
                    async for chunk in got:
                        await out.write(chunk)

            report["sbx_write_s"] = await _timed(write, rounds)
            report["sbx_read_s"] = await _timed(read, rounds)
        if hashlib.sha256(await trio.Path(back).read_bytes()).hexdigest() != digest:
            raise RuntimeError("the file read back differs from the one written")

        name = f"sbx-bench-cp-{secrets.token_hex(4)}"
        await _docker("run", "-d", "--name", name, "--network", "none", "--entrypoint",
                      "sleep", report["image"], "600")  # fmt: skip
        try:
            report["docker_cp_in_s"] = await _timed(
                lambda: _docker("cp", str(source), f"{name}:/tmp/bench.bin"), rounds
            )
            report["docker_cp_out_s"] = await _timed(
                lambda: _docker("cp", f"{name}:/tmp/bench.bin", str(back)), rounds
            )
        finally:
            with trio.CancelScope(shield=True):
                await _docker("rm", "-f", name)
    for key in ("sbx_write", "sbx_read", "docker_cp_in", "docker_cp_out"):
        seconds = statistics.median(report.pop(f"{key}_s"))
        report[f"{key}_s"] = round(seconds, 3)
        report[f"{key}_mib_s"] = round(SIZE / (1 << 20) / seconds, 1)
    report["write_vs_docker_cp"] = round(report["docker_cp_in_s"] / report["sbx_write_s"], 2)
    report["read_vs_docker_cp"] = round(report["docker_cp_out_s"] / report["sbx_read_s"], 2)
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return report


def format_files(report: dict[str, Any]) -> str:
    lines = [f"sbx bench --files — 100 MiB, image {report['image']}, median of {report['rounds']}"]
    for label, key in (
        ("write_file, streamed", "sbx_write"),
        ("docker cp into a container (baseline)", "docker_cp_in"),
        ("read_file_stream to a local file", "sbx_read"),
        ("docker cp out of a container (baseline)", "docker_cp_out"),
    ):
        lines.append(
            f"  {label:<42} {report[key + '_s']:>7.3f} s  {report[key + '_mib_s']:>7.1f} MiB/s"
        )
    lines.append(
        f"  docker cp time / sbx time: write {report['write_vs_docker_cp']:.2f}x, "
        f"read {report['read_vs_docker_cp']:.2f}x (above 1: sbx is faster)"
    )
    return "\n".join(lines)
