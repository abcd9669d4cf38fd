"""``python -m orchestrator.testing.fake_server``: the HTTP API over the fake backend.

For tests that need the API as a separate process (fuzzing it from its own
OpenAPI document, measuring its memory) without starting containers: the
guest runs as a local process, confined to a scratch directory.  Not a
sandbox; never for real use.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import trio

from orchestrator.api.server import serve_api
from orchestrator.backends.fake import FakeBackend
from orchestrator.config import load_config
from orchestrator.log import configure_logging

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1:0")
    args = parser.parse_args()
    configure_logging("warning", "json")
    with tempfile.TemporaryDirectory(prefix="sbx-fake-api-") as scratch:
        root = Path(scratch)
        (root / "workspace").mkdir()
        config = load_config()
        config.sandbox.allowed_roots = [str(root / "workspace")]
        config.sandbox.workdir = str(root / "workspace")
        config.api.runs_dir = root / "runs"

        async def run() -> None:
            backend = FakeBackend()
            try:

                async def started(*, task_status: trio.TaskStatus[str]) -> None:
                    await serve_api(
                        config, bind=args.bind, backend=backend, task_status=task_status
                    )

                async with trio.open_nursery() as nursery:
                    url = await nursery.start(started)
                    print(url, flush=True)
            finally:
                await backend.aclose()

        trio.run(run)


if __name__ == "__main__":
    main()
