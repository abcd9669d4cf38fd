"""Evaluation suites: tasks solved in fresh sandboxes, graded there, reported (``sbx eval``).

``load_suite`` reads and checks a suite file (``LoadError`` names file, line
and field); ``run_suite`` runs its trials through a ``WorkflowHost`` (an
``Orchestrator``) into an ``EvalRunDir``; ``write_reports`` writes JSON,
JUnit XML and the HTML page.
"""

from orchestrator.evals.loading import LoadedSuite, PlannedTask, load_suite
from orchestrator.evals.model import Suite, Task, suite_schema
from orchestrator.evals.reports import json_report, junit_xml, write_reports
from orchestrator.evals.results import GraderResult, SuiteResult, TrialResult
from orchestrator.evals.run_dir import EvalRunDir
from orchestrator.evals.runner import run_suite

__all__ = [
    "EvalRunDir",
    "GraderResult",
    "LoadedSuite",
    "PlannedTask",
    "Suite",
    "SuiteResult",
    "Task",
    "TrialResult",
    "json_report",
    "junit_xml",
    "load_suite",
    "run_suite",
    "suite_schema",
    "write_reports",
]
