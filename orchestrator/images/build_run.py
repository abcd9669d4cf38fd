"""The state of one ``ImageBuilder.build`` call: its targets, its progress, its limits.

``BuildTarget`` is one image a build considers (its recipe, its expected
hash, what the engine has now); ``BuildRun`` is what the steps of one build
share: scratch space, resolved apt sources, per-image stages and outcomes,
concurrency limiters, and the progress sink.  ``BuildRun.emit`` is the one
way a step tells the user (progress display or log) what an image is doing.

Must not: talk to the engine, run processes or touch files; the build
steps do that, in the modules next to this one.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
import trio

from orchestrator.images.engine import EngineImage
from orchestrator.images.layer_delta import LayerIndex
from orchestrator.images.layer_files import LayerFile
from orchestrator.images.models import BuildOutcome, BuildStage, ProgressEvent, ProgressSink
from orchestrator.images.recipes import LABEL_RECIPE_HASH, ImageRecipe

__all__ = [
    "BuildRun",
    "BuildTarget",
    "host_architecture",
    "now_rfc3339",
    "seconds_left",
]

log = structlog.get_logger("orchestrator.images")

_MMDEBSTRAP_CONCURRENCY = max(1, min(2, os.cpu_count() or 1))
"""Two bootstraps at once where there are two cores: dpkg is mostly single-threaded, so
they overlap well (all three images from scratch here: 270 s instead of 371 s)."""
_LOAD_CONCURRENCY = 2
"""The engine unpacks two layers at once faster than one after the other (measured)."""
_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def host_architecture() -> str:
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine or "amd64")


def seconds_left() -> float:
    """Seconds left before the innermost deadline (the build's), at least one."""
    deadline = trio.current_effective_deadline()
    if deadline == float("inf"):
        return 24 * 3600.0
    return max(1.0, deadline - trio.current_time())


@dataclass
class BuildTarget:
    """One image considered by a build."""

    recipe: ImageRecipe
    repo: str
    expected: str
    """The recipe hash the image must carry to be current."""
    force: bool
    existing: EngineImage | None
    """What ``<repo>:latest`` is on the engine now, if anything."""

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def latest(self) -> str:
        return f"{self.repo}:latest"

    @property
    def hash_tag(self) -> str:
        return f"{self.repo}:{self.expected[:12]}"

    @property
    def label_hash(self) -> str | None:
        if self.existing is None:
            return None
        return self.existing.labels.get(LABEL_RECIPE_HASH)

    @property
    def current(self) -> bool:
        return self.label_hash == self.expected

    @property
    def layers(self) -> list[str]:
        if self.existing is None:
            return []
        return list(self.existing.layers)


@dataclass
class BuildRun:
    """Per-build state shared by the steps of one ``build`` call."""

    progress: ProgressSink | None
    base_image: str | None
    tmp: Path = Path()
    suite: str = ""
    mirrors: list[Path] = field(default_factory=list)
    sources_digest: str = ""
    mmdebstrap: str = ""
    arch: str = field(default_factory=host_architecture)
    stages: dict[str, BuildStage] = field(default_factory=dict)
    outcomes: dict[str, BuildOutcome] = field(default_factory=dict)
    used_entries: dict[str, str] = field(default_factory=dict)
    bootstrap_limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(_MMDEBSTRAP_CONCURRENCY)
    )
    load_limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(_LOAD_CONCURRENCY)
    )
    base_indexes: dict[str, LayerIndex] = field(default_factory=dict)
    index_lock: trio.Lock = field(default_factory=trio.Lock)
    sbx_layers: dict[int, LayerFile] = field(default_factory=dict)

    def current_activity(self) -> str:
        busy = [f"{name} {stage.value}" for name, stage in self.stages.items() if not stage.final]
        return ", ".join(busy) or "starting"

    def emit(
        self,
        image: str,
        stage: BuildStage,
        message: str = "",
        fraction: float | None = None,
    ) -> None:
        """Tell the progress sink (and, on stage changes, the log) what ``image`` is doing."""
        if self.stages.get(image) != stage:
            # With a progress display the user already sees this; keep it out of their way.
            report = log.debug if self.progress is not None else log.info
            report("image build stage", image=image, stage=stage.value, detail=message)
        self.stages[image] = stage
        if self.progress is None:
            return
        try:
            event = ProgressEvent(image=image, stage=stage, message=message, fraction=fraction)
            self.progress(event)
        except Exception:
            log.warning("the progress display failed; continuing without it", exc_info=True)
            self.progress = None

    def emit_from_thread(
        self, image: str, stage: BuildStage, message: str, fraction: float | None = None
    ) -> None:
        """``emit`` from a worker thread started by trio; silently dropped once trio is gone."""
        with contextlib.suppress(trio.RunFinishedError, RuntimeError):
            trio.from_thread.run_sync(self.emit, image, stage, message, fraction)

    def fail_all(self, reason: str) -> None:
        for image, stage in list(self.stages.items()):
            if not stage.final:
                self.emit(image, BuildStage.FAILED, reason)

    def finish(
        self,
        target: BuildTarget,
        started: float,
        *,
        built: bool,
        from_cache: bool = False,
        detail: str = "",
    ) -> None:
        seconds = round(trio.current_time() - started, 2)
        self.outcomes[target.name] = BuildOutcome(
            name=target.name,
            image=target.latest,
            recipe_hash=target.expected,
            built=built,
            seconds=seconds,
            from_cache=from_cache,
            detail=detail,
        )
        stage = BuildStage.DONE if built else BuildStage.UP_TO_DATE
        message = detail or (f"built in {seconds:.1f} s" if built else target.hash_tag)
        self.emit(target.name, stage, message)
