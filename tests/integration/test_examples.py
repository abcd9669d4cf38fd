"""The examples the README points users at run as they say, against real sandboxes.

``examples/evals/claude.yaml`` runs in ``test_evals.py`` (against the local
Messages API) and ``examples/inspect`` in ``test_inspect_examples.py``; these
are the ones that need no API key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SBX = [sys.executable, "-m", "orchestrator.cli"]


def test_the_no_key_example_suite_passes_every_trial(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    report = tmp_path / "report.json"
    reports = ["--junit", str(junit), "--json", str(report), "--out", str(tmp_path / "run")]
    ran = subprocess.run(
        [*SBX, "eval", "examples/evals/smoke.yaml", *reports],
        cwd=ROOT,
        capture_output=True,
        timeout=900,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    suites = ET.parse(junit).getroot()
    names = [case.get("name") for case in suites.findall(".//testcase")]
    assert names == [  # every task, each epoch its own trial
        "add",
        "word-count",
        "c-program",
        "json-pipeline [epoch 1]",
        "json-pipeline [epoch 2]",
    ]
    assert not suites.findall(".//failure") and not suites.findall(".//error")
    assert json.loads(report.read_text())  # a report, readable as JSON


def test_the_example_workflow_gives_its_outputs() -> None:
    ran = subprocess.run(
        [*SBX, "workflow", "run", "examples/workflows/hello.yaml", "--var", "n=5", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    outputs = json.loads(ran.stdout)["outputs"]
    assert outputs["answer"].strip() == "42"
    assert outputs["used"].strip() == "got 42 n=5"
    assert outputs["last"].strip() == "item 3"
