"""The machine-readable reports of a run: JSON, and JUnit XML for CI systems.

JSON holds every trial: status, grader results, timings, the solver's steps,
tokens and cost for agent solvers, and the summary.  JUnit XML has a
``testcase`` per task and epoch; a failed one carries a ``failure`` with the
failing graders' messages (``type``: the first failing grader's), a timeout
a ``failure`` of type ``timeout``, an error an ``error``.  Text that XML
cannot hold (control characters from a program's output) is dropped.

Must not: run anything, or show a secret (what it writes was masked before).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrator.evals.results import SuiteResult, TrialResult

__all__ = ["json_report", "junit_xml", "write_reports"]

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    return _NOT_XML.sub("", text)


def json_report(result: SuiteResult) -> dict[str, Any]:
    return {
        "suite": result.name,
        "started": result.started,
        "seconds": result.seconds,
        "run_dir": result.run_dir,
        "ok": result.ok,
        "summary": result.summary(),
        "tasks": [trial.to_json() for trial in result.trials],
    }


def _grader_lines(trial: TrialResult) -> str:
    return "\n".join(
        f"[{'pass' if g.passed else 'FAIL'}] {g.name}: {g.message}" for g in trial.graders
    )


def _testcase(parent: ET.Element, suite: str, trial: TrialResult) -> None:
    case = ET.SubElement(
        parent, "testcase", classname=_x(suite), name=_x(trial.label), time=f"{trial.seconds:.3f}"
    )
    if trial.status == "failed":
        failing = [g for g in trial.graders if not g.passed]
        first = failing[0] if failing else None
        failure = ET.SubElement(
            case,
            "failure",
            message=_x(first.message if first else trial.message),
            type=_x(first.type if first else "failed"),
        )
        failure.text = _x(_grader_lines(trial))
    elif trial.status == "timeout":
        failure = ET.SubElement(case, "failure", message=_x(trial.message), type="timeout")
        failure.text = _x(trial.message)
    elif trial.status == "error":
        error = ET.SubElement(case, "error", message=_x(trial.message), type="error")
        error.text = _x(trial.message + ("\n" + _grader_lines(trial) if trial.graders else ""))
    out = [f"status: {trial.status}", f"session: {trial.session_id}"]
    if trial.graders:
        out.append(_grader_lines(trial))
    if trial.model:
        out.append(
            f"model: {trial.model}; tokens: {trial.input_tokens} in, {trial.output_tokens} out"
        )
    ET.SubElement(case, "system-out").text = _x("\n".join(out))


def junit_xml(result: SuiteResult) -> str:
    summary = result.summary()
    counts = {
        "tests": str(summary["total"]),
        "failures": str(summary["failed"] + summary["timeout"]),
        "errors": str(summary["error"]),
        "skipped": "0",
        "time": f"{result.seconds:.3f}",
    }
    root = ET.Element("testsuites", {"name": _x(result.name), **counts})
    attributes = {"name": _x(result.name), "timestamp": result.started, **counts}
    suite = ET.SubElement(root, "testsuite", attributes)
    for trial in result.trials:
        _testcase(suite, result.name, trial)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_reports(
    result: SuiteResult,
    *,
    json_path: Path | None = None,
    junit_path: Path | None = None,
    html_path: Path | None = None,
) -> list[Path]:
    """Write the reports asked for; the paths written."""
    from orchestrator.evals.html_report import html_page

    written: list[Path] = []
    outputs: list[tuple[Path | None, str]] = [
        (json_path, json.dumps(json_report(result), indent=2, default=str) + "\n"),
        (junit_path, junit_xml(result)),
    ]
    for path, text in outputs:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(html_page(result, Path(result.run_dir)), encoding="utf-8")
        written.append(html_path)
    return written
