"""Embedded as a library, sbx prints nothing unless the application configures logging."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import IMAGE

LIBRARY_USE = textwrap.dedent(
    """
    import logging, sys, trio
    from orchestrator import Orchestrator

    if sys.argv[2] == "configured":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    async def main():
        async with Orchestrator() as orch:
            async with orch.session(image=sys.argv[1], memories=False) as session:
                result = await session.exec(["echo", "hi"])
        print(result.stdout_text, end="")

    trio.run(main)
    """
)


@pytest.mark.parametrize("logging_setup", ["none", "configured"])
def test_as_a_library_sbx_logs_only_when_the_application_configures_logging(
    logging_setup: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LIBRARY_USE, IMAGE, logging_setup],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"
    if logging_setup == "none":
        assert done.stderr == ""
    else:
        assert "INFO:orchestrator" in done.stderr and "session ready" in done.stderr
