"""What an evaluation run records: each trial (a task in one epoch) and the suite's summary.

A ``TrialResult`` is one line of the run directory's ``results.jsonl`` and
one ``testcase`` of the JUnit report; ``to_json``/``from_json`` round-trip
it, which is what ``--resume`` reads back.  Statuses: ``passed`` (every
grader passed), ``failed`` (one did not), ``timeout`` (setup and solving ran
past the task's timeout; graders were not run), ``error`` (the sandbox,
the setup or a grader could not run: re-run on resume).

Must not: run anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["FINISHED", "GraderResult", "SuiteResult", "TrialResult", "TrialStatus"]

TrialStatus = Literal["passed", "failed", "timeout", "error"]
FINISHED: frozenset[str] = frozenset({"passed", "failed", "timeout"})
"""Statuses a resumed run keeps; an ``error`` is tried again."""


@dataclass
class GraderResult:
    type: str
    name: str
    passed: bool
    message: str = ""
    score: float | None = None
    seconds: float = 0.0
    error: bool = False
    """The grader could not run (its sandbox was gone, its code did not run)."""


@dataclass
class TrialResult:
    task: str
    epoch: int
    status: TrialStatus = "error"
    message: str = ""
    seconds: float = 0.0
    digest: str = ""
    session_id: str = ""
    graders: list[GraderResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: start, files, setup, solve, graders."""
    solve: dict[str, Any] = field(default_factory=dict)
    """The solver's steps as ``WorkflowResult.to_json`` has them (masked)."""
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    transcripts: list[str] = field(default_factory=list)
    """Agent transcripts (``transcript.jsonl``), relative to the run directory."""
    screenshots: list[str] = field(default_factory=list)
    """PNG files, relative to the run directory."""
    epochs: int = 1

    @property
    def key(self) -> tuple[str, int]:
        return (self.task, self.epoch)

    @property
    def label(self) -> str:
        return self.task if self.epochs == 1 else f"{self.task} [epoch {self.epoch}]"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialResult:
        graders = [GraderResult(**grader) for grader in data.get("graders", [])]
        known = {name for name in cls.__dataclass_fields__ if name != "graders"}
        return cls(**{k: v for k, v in data.items() if k in known}, graders=graders)


@dataclass
class SuiteResult:
    name: str
    trials: list[TrialResult]
    seconds: float = 0.0
    started: str = ""
    run_dir: str = ""
    interrupted: bool = False
    planned: int = 0
    """Trials the run was to have (all of them when it was not interrupted)."""

    def count(self, status: str) -> int:
        return sum(1 for trial in self.trials if trial.status == status)

    @property
    def ok(self) -> bool:
        return (
            not self.interrupted
            and bool(self.trials)
            and all(trial.status == "passed" for trial in self.trials)
        )

    def summary(self) -> dict[str, Any]:
        costs = [t.cost_usd for t in self.trials if t.cost_usd is not None]
        return {
            "total": len(self.trials),
            "planned": self.planned or len(self.trials),
            "passed": self.count("passed"),
            "failed": self.count("failed"),
            "timeout": self.count("timeout"),
            "error": self.count("error"),
            "input_tokens": sum(t.input_tokens for t in self.trials),
            "output_tokens": sum(t.output_tokens for t in self.trials),
            "cost_usd": round(sum(costs), 6) if costs else None,
            "interrupted": self.interrupted,
        }
