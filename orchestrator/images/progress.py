"""Showing image-build progress on a terminal (rich) or as plain lines in CI logs.

Builds take minutes, so the user has to see which image is in which stage
and what mmdebstrap or the engine is doing right now.  ``RichBuildProgress``
is a ``ProgressSink``: pass it as ``progress=`` to the builder inside a
``with`` block.  On a terminal it draws one live row per image; elsewhere it
prints one line per stage change, so logs stay readable.

Presentation only: it must not import the builder or any engine code, and it
never blocks (events arrive on the trio thread).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column

from orchestrator.images.models import BuildStage, ProgressEvent

__all__ = ["RichBuildProgress"]

_STAGE_STYLE = {
    BuildStage.UP_TO_DATE: "green",
    BuildStage.DONE: "bold green",
    BuildStage.FAILED: "bold red",
    BuildStage.WAITING: "dim",
}


class RichBuildProgress:
    """A live per-image progress display; use as a context manager and a callback.

    ``min_interval`` limits how often a non-terminal console prints a message
    line for the same image and stage (stage changes always print).
    """

    def __init__(self, console: Console | None = None, *, min_interval: float = 10.0) -> None:
        self.console = console or Console(stderr=True)
        self.min_interval = min_interval
        self._live = self.console.is_terminal
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._stages: dict[str, BuildStage] = {}
        self._last_line: dict[str, float] = {}

    def __enter__(self) -> Self:
        if self._live:
            self._progress = Progress(
                SpinnerColumn(finished_text="•"),
                TextColumn(
                    "[bold]{task.fields[image]}", table_column=Column(width=12, no_wrap=True)
                ),
                TextColumn("{task.fields[stage]}", table_column=Column(width=24, no_wrap=True)),
                BarColumn(bar_width=20),
                TimeElapsedColumn(),
                TextColumn(
                    "[dim]{task.fields[message]}",
                    table_column=Column(overflow="ellipsis", no_wrap=True),
                ),
                console=self.console,
                transient=False,
                expand=False,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, event: ProgressEvent, /) -> None:
        if self._progress is not None:
            self._update_live(self._progress, event)
        else:
            self._print_line(event)
        self._stages[event.image] = event.stage

    def _update_live(self, progress: Progress, event: ProgressEvent) -> None:
        style = _STAGE_STYLE.get(event.stage, "cyan")
        stage_text = f"[{style}]{event.stage.value}[/]"
        message = event.message.replace("[", r"\[")[:120]
        task = self._tasks.get(event.image)
        if task is None:
            task = progress.add_task(
                event.image, total=None, image=event.image, stage=stage_text, message=message
            )
            self._tasks[event.image] = task
        if event.stage.final:
            progress.update(task, total=1, completed=1, stage=stage_text, message=message)
            progress.stop_task(task)
            return
        if event.fraction is not None:
            progress.update(
                task,
                total=1.0,
                completed=max(0.0, min(1.0, event.fraction)),
                stage=stage_text,
                message=message,
            )
        else:
            progress.update(task, total=None, stage=stage_text, message=message)

    def _print_line(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        changed = self._stages.get(event.image) != event.stage
        if not changed and now - self._last_line.get(event.image, 0.0) < self.min_interval:
            return
        self._last_line[event.image] = now
        text = f"{event.image}: {event.stage.value}"
        if event.message:
            text += f" — {event.message}"
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
