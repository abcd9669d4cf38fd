"""What an image build reports: per-image outcomes, status rows and progress events.

Engine-neutral on purpose: the CLI (`sbx images build`, `sbx images ls`),
`sbx doctor` and the HTTP API read these without knowing which backend built
the images.  This module must not import docker-py, rich or anything from
``orchestrator.backends``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BuildOutcome",
    "BuildStage",
    "ImageStatus",
    "ProgressEvent",
    "ProgressSink",
]


class BuildStage(StrEnum):
    """The stages a progress display shows, in roughly the order they happen."""

    CHECKING = "checking"
    WAITING = "waiting"
    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    COMPUTING_LAYER = "computing layer"
    COMMITTING = "committing"
    LOADING = "loading into the engine"
    UP_TO_DATE = "up to date"
    DONE = "done"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """True for the stages after which an image gets no more events."""
        return self in (BuildStage.UP_TO_DATE, BuildStage.DONE, BuildStage.FAILED)


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One progress report: which image, which stage, and a human line about it.

    ``fraction`` (0..1) is set when the stage's progress is measurable (an
    upload, a package count); ``None`` means "busy, length unknown".
    """

    image: str
    stage: BuildStage
    message: str = ""
    fraction: float | None = None


class ProgressSink(Protocol):
    """Anything that takes progress events: a plain function or ``RichBuildProgress``.

    Called on the trio thread, so it must return quickly and must not block.
    """

    def __call__(self, event: ProgressEvent, /) -> None: ...


class BuildOutcome(BaseModel):
    """What happened to one image considered by a build."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Short name: base, code-runner, desktop.")
    image: str = Field(description="Engine reference, e.g. sbx-base:latest.")
    recipe_hash: str
    built: bool = Field(description="False when the image was already up to date.")
    seconds: float = Field(description="Wall time spent on this image.")
    from_cache: bool = Field(
        default=False,
        description="Built from a cached rootfs/layer instead of bootstrapping it again.",
    )
    detail: str = ""

    @property
    def up_to_date(self) -> bool:
        return not self.built


class ImageStatus(BaseModel):
    """One recipe's image as the engine has it (``sbx images ls``, ``sbx doctor``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    image: str
    present: bool
    current: bool = Field(description="Present and labelled with the expected recipe hash.")
    expected_hash: str
    image_hash: str | None = None
    size: int | None = Field(default=None, description="Bytes, as the engine reports them.")
    created: datetime | None = None
    image_id: str | None = None
