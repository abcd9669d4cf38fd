"""``sbx images build --file Dockerfile --tag NAME [CONTEXT]``: a user image from a Dockerfile.

Presentation only: the engine builds it (``backends.docker.dockerfile_build``),
with no registry, so ``FROM`` names a local image such as ``sbx-base``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from orchestrator.config import Config
from orchestrator.errors import ConfigError

__all__ = ["build_user_image"]


def build_user_image(args: argparse.Namespace, config: Config) -> int:
    """Build ``--tag`` from ``--file`` and CONTEXT; the build's output goes to stderr."""
    if not args.tag:
        raise ConfigError("--file needs --tag NAME: sbx images build --file Dockerfile --tag NAME")
    if len(args.names) > 1:
        raise ConfigError(
            f"with --tag, give at most one build CONTEXT (a folder), not {' '.join(args.names)}"
        )
    if config.engine.backend != "docker":
        raise ConfigError("building from a Dockerfile needs engine.backend = 'docker'")
    context = Path(args.names[0] if args.names else ".")
    dockerfile = Path(args.file) if args.file else context / "Dockerfile"

    from orchestrator.backends.docker.dockerfile_build import build_from_dockerfile

    def show(line: str) -> None:
        print(line, file=sys.stderr)

    image_id = trio.run(
        lambda: build_from_dockerfile(
            config, dockerfile=dockerfile, tag=args.tag, context=context, on_line=show
        )
    )
    print(f"{args.tag:<28} built  {image_id.removeprefix('sha256:')[:12]}")
    return 0
