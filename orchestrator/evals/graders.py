"""Grading a trial: each grader's verdict, score and message.

``exit_code`` and ``output_matches`` judge what the solver left
(``Solved``); ``file_matches`` reads a file from the sandbox; ``command``
and ``python`` run *inside the task's sandbox*, as the sandbox user, under
a timeout -- never in this process, whatever the suite says.  Python runs
isolated (``python3 -I``: no user site, no environment hooks), so a solver
cannot plant code that runs in place of the grader's.  A grader that cannot
run at all (the sandbox is gone) is an ``error``, not a failure.

Must not: run grader code on the host, or let one grader's failure stop the others.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.errors import GuestFileNotFound, SbxError
from orchestrator.evals.model import (
    CommandGrader,
    ExitCodeGrader,
    FileMatchesGrader,
    Grader,
    OutputMatchesGrader,
    PythonGrader,
)
from orchestrator.evals.results import GraderResult

if TYPE_CHECKING:
    from orchestrator.session import Session

__all__ = ["PYTHON_WRAPPER", "Solved", "run_graders"]

MARKER = "__sbx_grade__"
PYTHON_WRAPPER = f"""
import json, sys
namespace = {{"__name__": "__grader__"}}
exec(compile(sys.argv[1], "<grader>", "exec"), namespace)
score = namespace.get("score")
if not isinstance(score, (bool, int, float)):
    score = None if score is None else str(score)
print("\\n{MARKER}" + json.dumps({{"score": score, "message": str(namespace.get("message", ""))}}))
"""
_TAIL = 500


@dataclass(frozen=True)
class Solved:
    """What the solver left for the graders: its exit code and its output."""

    exit_code: int
    output: str


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL else "…" + text[-_TAIL:]


async def _exit_code(grader: ExitCodeGrader, solved: Solved) -> tuple[bool, str, float | None]:
    ok = solved.exit_code == grader.equals
    return ok, f"exit code {solved.exit_code}, expected {grader.equals}", None


async def _output(grader: OutputMatchesGrader, solved: Solved) -> tuple[bool, str, float | None]:
    if re.search(grader.pattern, solved.output, re.MULTILINE):
        return True, f"the output matches {grader.pattern!r}", None
    return False, f"the output does not match {grader.pattern!r}: {_tail(solved.output)!r}", None


async def _file(grader: FileMatchesGrader, session: Session) -> tuple[bool, str, float | None]:
    try:
        data = await session.read_file(grader.path)
    except GuestFileNotFound:
        return False, f"{grader.path} does not exist", None
    text = data.decode("utf-8", "replace")
    if re.search(grader.pattern, text, re.MULTILINE):
        return True, f"{grader.path} matches {grader.pattern!r}", None
    return False, f"{grader.path} does not match {grader.pattern!r}: {_tail(text)!r}", None


async def _command(grader: CommandGrader, session: Session) -> tuple[bool, str, float | None]:
    result = await session.exec(grader.run, timeout=grader.timeout)
    if result.timed_out:
        return False, f"`{grader.run}` timed out after {grader.timeout:g} s", None
    if result.exit_code == 0:
        return True, f"`{grader.run}` exited 0", None
    said = _tail(result.stderr_text or result.stdout_text)
    return False, f"`{grader.run}` exited {result.exit_code}" + (f": {said}" if said else ""), None


async def _python(grader: PythonGrader, session: Session) -> tuple[bool, str, float | None]:
    result = await session.exec(
        ["python3", "-I", "-c", PYTHON_WRAPPER, grader.code], timeout=grader.timeout
    )
    if result.timed_out:
        raise _GraderError(f"the grader's code timed out after {grader.timeout:g} s")
    lines = [line for line in result.stdout_text.splitlines() if line.startswith(MARKER)]
    if result.exit_code != 0 or not lines:
        raise _GraderError(
            f"the grader's code failed (exit code {result.exit_code}): "
            f"{_tail(result.stderr_text or result.stdout_text)}"
        )
    verdict = json.loads(lines[-1][len(MARKER) :])
    score, message = verdict["score"], verdict["message"]
    if score is None:
        raise _GraderError("the grader's code did not set `score` (a bool or a number)")
    if isinstance(score, bool):
        return score, message or f"score = {score}", 1.0 if score else 0.0
    if isinstance(score, int | float):
        passed = score >= grader.threshold
        return passed, message or f"score {score:g} (pass from {grader.threshold:g})", float(score)
    raise _GraderError(f"`score` must be a bool or a number, got {score!r}")


class _GraderError(Exception):
    """The grader could not judge (its own code failed)."""


def _name(grader: Grader) -> str:
    if grader.name:
        return grader.name
    if isinstance(grader, FileMatchesGrader):
        return f"file_matches {grader.path}"
    if isinstance(grader, CommandGrader):
        return f"command {grader.run[:60]}"
    return grader.type


async def _one(grader: Grader, session: Session, solved: Solved) -> GraderResult:
    started = time.perf_counter()
    error = False
    score: float | None = None
    try:
        if isinstance(grader, ExitCodeGrader):
            passed, message, score = await _exit_code(grader, solved)
        elif isinstance(grader, OutputMatchesGrader):
            passed, message, score = await _output(grader, solved)
        elif isinstance(grader, FileMatchesGrader):
            passed, message, score = await _file(grader, session)
        elif isinstance(grader, CommandGrader):
            passed, message, score = await _command(grader, session)
        else:
            passed, message, score = await _python(grader, session)
    except _GraderError as exc:
        passed, message = False, str(exc)
    except SbxError as exc:
        passed, message, error = False, f"the grader could not run: {exc}", True
    if score is None:
        score = 1.0 if passed else 0.0
    return GraderResult(
        type=grader.type,
        name=_name(grader),
        passed=passed,
        message=message,
        score=score,
        seconds=round(time.perf_counter() - started, 3),
        error=error,
    )


async def run_graders(
    session: Session, graders: Sequence[Grader], solved: Solved
) -> list[GraderResult]:
    """Every grader, in order; each one's verdict whatever the others'."""
    return [await _one(grader, session, solved) for grader in graders]
