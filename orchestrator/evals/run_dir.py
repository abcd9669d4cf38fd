"""An evaluation run's directory: what finished, and each trial's files.

    DIR/suite.json          the suite's name and file, when the run began
    DIR/results.jsonl       one line per trial as it finishes (appended, flushed)
    DIR/trials/TASK/EPOCH/  agent transcripts, screenshots
    DIR/report.json, junit.xml, report.html

``--resume DIR`` reads ``results.jsonl`` back: a trial whose last line is
``passed``, ``failed`` or ``timeout`` and whose task has not changed (same
digest) is not run again.

Must not: run anything, or rewrite a line once written.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from orchestrator.errors import ConfigError
from orchestrator.evals.results import FINISHED, TrialResult

__all__ = ["EvalRunDir"]


class EvalRunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self._results: IO[str] | None = None

    @classmethod
    def create(cls, root: Path, suite: str) -> EvalRunDir:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", suite).strip("-") or "suite"
        return cls(root / f"{slug}-{stamp}-{secrets.token_hex(2)}")

    @classmethod
    def resume(cls, path: Path, suite: str) -> EvalRunDir:
        meta = path / "suite.json"
        if not meta.is_file():
            raise ConfigError(
                f"--resume {path}: not an evaluation run directory (no suite.json); give the "
                "directory a run printed when it started"
            )
        recorded = json.loads(meta.read_text(encoding="utf-8")).get("name")
        if recorded != suite:
            raise ConfigError(
                f"--resume {path}: that directory holds a run of suite {recorded!r}, not {suite!r}"
            )
        return cls(path)

    def begin(self, suite: str, file: str) -> None:
        meta = self.path / "suite.json"
        if not meta.exists():
            data = {"name": suite, "file": file, "started": datetime.now(UTC).isoformat()}
            meta.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @property
    def started(self) -> str:
        meta = self.path / "suite.json"
        try:
            return str(json.loads(meta.read_text(encoding="utf-8")).get("started", ""))
        except (OSError, ValueError):
            return ""

    def finished(self, digests: dict[str, str]) -> dict[tuple[str, int], TrialResult]:
        """Trials done before, whose task is unchanged (``digests``: task id to digest)."""
        done: dict[tuple[str, int], TrialResult] = {}
        path = self.path / "results.jsonl"
        if not path.exists():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                trial = TrialResult.from_json(json.loads(line))
            except (ValueError, TypeError, KeyError):
                continue  # a line cut short by a crash: that trial runs again
            if trial.status in FINISHED and digests.get(trial.task) == trial.digest:
                done[trial.key] = trial
            else:
                done.pop(trial.key, None)
        return done

    def trial_dir(self, task: str, epoch: int) -> Path:
        return self.path / "trials" / task / str(epoch)

    def relative(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.path.resolve()))
        except ValueError:
            return str(path)

    def record(self, trial: TrialResult) -> None:
        if self._results is None:
            self._results = (self.path / "results.jsonl").open("a", encoding="utf-8")
        self._results.write(json.dumps(trial.to_json(), default=_plain) + "\n")
        self._results.flush()

    def close(self) -> None:
        if self._results is not None:
            self._results.close()
            self._results = None


def _plain(value: Any) -> Any:
    return str(value)
