"""Exec details harnesses rely on: relative cwd, programs that cannot start, stdin as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.errors import InvalidInput


@pytest.fixture
def ws(fake_config) -> Path:
    return Path(fake_config.sandbox.allowed_roots[0])


async def test_a_relative_cwd_is_taken_from_the_working_directory(
    orch: Orchestrator, ws: Path
) -> None:
    (ws / "sub/inner").mkdir(parents=True)
    async with orch.session(workdir=str(ws)) as s:
        result = await s.exec("pwd", cwd="sub/inner")
        assert result.stdout.decode().strip() == str(ws / "sub/inner")
        assert (await s.exec(["pwd"], cwd="./sub/../sub")).stdout.decode().strip() == str(
            ws / "sub"
        )


async def test_a_program_that_cannot_start_says_why(orch: Orchestrator, ws: Path) -> None:
    (ws / "plain.txt").write_text("not a program\n")
    (ws / "plain.txt").chmod(0o644)
    async with orch.session(workdir=str(ws)) as s:
        missing = await s.exec(["no-such-program-sbx"])
        assert (missing.exit_code, missing.spawn_error) == (127, "not_found")
        assert b"command not found" in missing.stderr
        denied = await s.exec(["./plain.txt"])
        assert (denied.exit_code, denied.spawn_error) == (126, "permission_denied")
        ran = await s.exec("exit 127")
        assert (ran.exit_code, ran.spawn_error) == (127, None)


async def test_stdin_takes_text_or_bytes(orch: Orchestrator) -> None:
    async with orch.session() as s:
        assert (await s.exec("cat", stdin="héllo")).stdout == "héllo".encode()
        assert (await s.exec("cat", stdin=b"\x00\xff")).stdout == b"\x00\xff"
        with pytest.raises(InvalidInput, match="not valid Unicode"):
            await s.exec("cat", stdin="\udcff")
