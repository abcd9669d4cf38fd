"""Which image a resumed run goes on in: the snapshot its last stop kept, if any."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.agent.resume import load_run


def _write(run_dir: Path, events: list[dict[str, Any]]) -> Path:
    run_dir.mkdir()
    lines = [json.dumps({"type": "start", "task": "t", "image": "code-runner"})]
    lines += [json.dumps(event) for event in events]
    (run_dir / "transcript.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def test_a_run_without_a_snapshot_goes_on_in_its_sessions_image(tmp_path: Path) -> None:
    run = load_run(_write(tmp_path / "r", [{"type": "session", "image": "sbx-code-runner"}]))
    assert run.image == "sbx-code-runner" and run.snapshot is None


def test_the_snapshot_kept_at_the_stop_is_where_the_run_goes_on(tmp_path: Path) -> None:
    run = load_run(
        _write(
            tmp_path / "r",
            [
                {"type": "session", "image": "sbx-code-runner"},
                {"type": "snapshot", "image": "sbx-snapshot:aaaaaaaaaaaa"},
            ],
        )
    )
    assert run.image == run.snapshot == "sbx-snapshot:aaaaaaaaaaaa"


def test_a_later_session_without_its_own_snapshot_keeps_the_image_it_ran_in(
    tmp_path: Path,
) -> None:
    run = load_run(
        _write(
            tmp_path / "r",
            [
                {"type": "session", "image": "sbx-code-runner"},
                {"type": "snapshot", "image": "sbx-snapshot:aaaaaaaaaaaa"},
                {"type": "session", "image": "sbx-snapshot:aaaaaaaaaaaa"},
                {"type": "snapshot_failed", "reason": "the session is crashed"},
            ],
        )
    )
    assert run.image == "sbx-snapshot:aaaaaaaaaaaa"
    assert run.snapshot is None  # the note must not promise files the last stop did not keep
