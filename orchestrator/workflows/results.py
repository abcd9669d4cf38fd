"""What a workflow run gives back: each step's status, timing and outputs, and the run's outputs.

``WorkflowResult.to_json()`` is the document ``sbx workflow run --json``
prints and ``POST /v1/workflows`` answers with: ``{"ok", "outputs",
"steps": {id: {"status", "seconds", ...}}}``.  ``WorkflowEvent`` is what a
run reports while it goes (the CLI's progress lines, the API's stream).
Everything here has been through the run's ``Masker`` already.

Must not: run anything, or hold secret values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["StepResult", "StepStatus", "WorkflowEvent", "WorkflowResult"]

StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]


@dataclass
class StepResult:
    """One step (or one item of a ``foreach`` step)."""

    id: str
    status: StepStatus = "pending"
    seconds: float = 0.0
    attempts: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    """Why the step was skipped or cancelled."""
    items: list[StepResult] | None = None
    """A ``foreach`` step's items, in order."""
    details: dict[str, Any] = field(default_factory=dict)
    """What was run (the command, the tool input) and where (an agent's run directory)."""
    action: str = ""
    item: Any = None
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    """Files a ``get`` step read back, by path (not in ``to_json``)."""

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "skipped")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "attempts": self.attempts,
        }
        if self.action:
            data["action"] = self.action
        data.update(self.outputs)
        for key in ("error", "reason"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.details:
            data["details"] = self.details
        if self.items is not None:
            data["items"] = [{"item": entry.item, **entry.to_json()} for entry in self.items]
        return data


@dataclass
class WorkflowResult:
    ok: bool
    outputs: dict[str, Any]
    steps: dict[str, StepResult]
    seconds: float = 0.0
    name: str | None = None
    error: str | None = None
    """Why the run as a whole failed, beyond its steps (a timeout, an output that failed)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "outputs": self.outputs,
            "steps": {step_id: step.to_json() for step_id, step in self.steps.items()},
            "seconds": round(self.seconds, 3),
        }
        if self.name is not None:
            data["name"] = self.name
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass(frozen=True)
class WorkflowEvent:
    """A step started, retried, finished or was skipped (``index``: the foreach item)."""

    kind: Literal["step_started", "step_retry", "step_finished"]
    step: str
    index: int | None = None
    attempt: int = 1
    status: StepStatus | None = None
    seconds: float = 0.0
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None
    detail: str | None = None
    """A one-line description of what runs (the command), masked."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step}
        for key in ("index", "status", "exit_code", "error", "reason", "detail"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.kind != "step_started" or self.attempt > 1:
            data["attempt"] = self.attempt
        if self.kind == "step_finished":
            data["seconds"] = round(self.seconds, 3)
        return data
