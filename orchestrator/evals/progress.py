"""What ``sbx eval`` shows while it runs: a live view on a terminal, plain lines otherwise.

The live view keeps one status line -- running, passed, failed, elapsed --
and the trials in flight at the bottom of the terminal, with a line per
finished trial above it.  It is redrawn by ``tick`` (a trio task the caller
runs), never by a thread of its own.  Anywhere else (CI logs, a pipe) each
finished trial is one plain line.

Must not: run trials, or draw from a thread.
"""

from __future__ import annotations

import sys
import time
from typing import IO

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from orchestrator.evals.results import TrialResult

__all__ = ["LiveProgress", "PlainProgress", "make_progress"]

_MARKS = {"passed": "PASS", "failed": "FAIL", "timeout": "TIME", "error": "ERR "}
_STYLES = {"passed": "green", "failed": "red", "timeout": "yellow", "error": "magenta"}


def _line(trial: TrialResult) -> str:
    text = f"{_MARKS[trial.status]} {trial.label} ({trial.seconds:.1f} s)"
    if trial.status != "passed" and trial.message:
        text += f": {trial.message.splitlines()[0][:200]}"
    return text


class _Counts:
    def __init__(self) -> None:
        self.total = 0
        self.skipped = 0
        self.counts = dict.fromkeys(_MARKS, 0)
        self.running: dict[tuple[str, int], float] = {}
        self.began = time.monotonic()

    def begin(self, total: int, skipped: int) -> None:
        self.total, self.skipped = total, skipped
        self.began = time.monotonic()

    def started(self, task: str, epoch: int) -> None:
        self.running[(task, epoch)] = time.monotonic()

    def finished(self, trial: TrialResult) -> None:
        self.running.pop(trial.key, None)
        self.counts[trial.status] += 1

    def status(self) -> str:
        done = sum(self.counts.values()) + self.skipped
        parts = [
            f"{done}/{self.total} done",
            f"running {len(self.running)}",
            f"passed {self.counts['passed']}",
            f"failed {self.counts['failed'] + self.counts['timeout'] + self.counts['error']}",
            f"elapsed {time.monotonic() - self.began:.1f} s",
        ]
        if self.skipped:
            parts.insert(1, f"{self.skipped} from before")
        return " · ".join(parts)


class PlainProgress(_Counts):
    """A line per finished trial, and a status line at the start."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def begin(self, total: int, skipped: int) -> None:
        super().begin(total, skipped)
        extra = f" ({skipped} finished before, skipped)" if skipped else ""
        print(f"{total} trials{extra}", file=self.stream, flush=True)

    def finished(self, trial: TrialResult) -> None:
        super().finished(trial)
        print(f"{_line(trial)}  [{self.status()}]", file=self.stream, flush=True)

    async def tick(self) -> None:
        await trio.sleep_forever()

    def close(self) -> None:
        pass


class LiveProgress(_Counts):
    """The live view of a terminal."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.live = Live(console=console, auto_refresh=False, transient=True)
        self.live.start()

    def _view(self) -> Group:
        now = time.monotonic()
        rows = [Text(self.status(), style="bold")]
        for (task, epoch), since in list(self.running.items())[:12]:
            label = task if epoch == 1 else f"{task} [epoch {epoch}]"
            rows.append(Text(f"  ⋯ {label} {now - since:.1f} s", style="dim"))
        if len(self.running) > 12:
            rows.append(Text(f"  … and {len(self.running) - 12} more", style="dim"))
        return Group(*rows)

    def _draw(self) -> None:
        self.live.update(self._view(), refresh=True)

    def begin(self, total: int, skipped: int) -> None:
        super().begin(total, skipped)
        self._draw()

    def started(self, task: str, epoch: int) -> None:
        super().started(task, epoch)
        self._draw()

    def finished(self, trial: TrialResult) -> None:
        super().finished(trial)
        self.console.print(Text(_line(trial), style=_STYLES[trial.status]))
        self._draw()

    async def tick(self) -> None:
        """Redraw twice a second (the elapsed time) until cancelled."""
        while True:
            self._draw()
            await trio.sleep(0.5)

    def close(self) -> None:
        self.live.stop()
        self.console.print(Text(self.status(), style="bold"))


def make_progress(stream: IO[str] | None = None) -> LiveProgress | PlainProgress:
    stream = stream if stream is not None else sys.stderr
    if stream.isatty():
        return LiveProgress(Console(file=stream))
    return PlainProgress(stream)
