"""``sbx images build --file Dockerfile --tag NAME [CONTEXT]``: a user's image, built by the engine.

There is no registry: the Dockerfile's ``FROM`` must name an image the engine
already has (ours, ``sbx-base`` and the rest, or one built before), and the
build never pulls.  The engine's build output streams to the caller line by
line; a failing step is reported with that step and the last lines it
printed, so the fix can be read off the error.

Must not: let a docker-py type or exception out (``DockerEngine.call``
translates them), or build without a deadline (``images.build_timeout``).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.config import Config
from orchestrator.errors import ConfigError, ImageBuildError

__all__ = ["build_from_dockerfile"]

_TAIL = 20
"""Lines of the failing step's output kept for the error."""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ENGINE_NOTES = (" ---> ", "Removing intermediate container")
"""The engine's own lines in a step's output, left out of the error."""
_NO_REGISTRY = ("pull access denied", "repository does not exist", "dial tcp", "manifest unknown")


async def build_from_dockerfile(
    config: Config,
    *,
    dockerfile: Path,
    tag: str,
    context: Path,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Build ``tag`` from ``dockerfile`` with ``context``; the new image's id.

    ``ConfigError`` for a missing Dockerfile or context; ``ImageBuildError``
    naming the failing step and its last output when a step fails.
    """
    if not await trio.Path(context).is_dir():
        raise ConfigError(
            f"the build context {context} is not a folder; pass an existing folder as CONTEXT "
            "(default: the current directory)"
        )
    if not await trio.Path(dockerfile).is_file():
        raise ConfigError(f"the Dockerfile {dockerfile} does not exist; pass its path with --file")
    engine = DockerEngine(config.engine.docker_host, call_timeout=config.images.build_timeout)
    timeout = config.images.build_timeout
    token = trio.lowlevel.current_trio_token()

    def tell(line: str) -> None:
        if on_line is not None:
            trio.from_thread.run_sync(on_line, line, trio_token=token)

    def build() -> str:
        api = (
            docker.APIClient(base_url=engine.base_url, timeout=int(timeout))
            if engine.base_url
            else docker.from_env(timeout=int(timeout)).api
        )
        try:
            return _follow(api, dockerfile, tag, context, tell)
        finally:
            api.close()

    try:
        return await engine.call(f"building image {tag}", build, timeout=timeout, guarded=False)
    finally:
        await engine.aclose()


def _follow(
    api: Any, dockerfile: Path, tag: str, context: Path, tell: Callable[[str], None]
) -> str:
    step = "the build"
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
    image_id = ""
    stream = api.build(
        path=str(context),
        dockerfile=str(dockerfile.resolve()),
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    for item in stream:
        text = item.get("stream")
        if isinstance(text, str):
            for line in _ANSI.sub("", text).splitlines():
                if line.startswith("Step "):
                    step, tail = line, collections.deque(maxlen=_TAIL)
                elif line.strip() and not line.startswith(_ENGINE_NOTES):
                    tail.append(line)
                tell(line)
        aux = item.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            image_id = aux["ID"]
        error = item.get("errorDetail", {}).get("message") or item.get("error")
        if error:
            raise ImageBuildError(_failure(tag, step, list(tail), str(error)))
    if not image_id:
        image_id = str(api.inspect_image(tag).get("Id", ""))
    return image_id


def _failure(tag: str, step: str, tail: list[str], error: str) -> str:
    output = "\n".join(f"    {line}" for line in tail) or "    (no output)"
    hint = "fix that step of the Dockerfile and build again"
    if any(marker in error for marker in _NO_REGISTRY):
        hint = (
            "no registry is reachable: FROM must name a local image, such as sbx-base or "
            "sbx-code-runner (`sbx images build` makes ours; `docker images` lists them)"
        )
    return f"building {tag} failed at {step}: {error.strip()}\n{output}\n— {hint}"
