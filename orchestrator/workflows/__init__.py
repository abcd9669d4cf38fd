"""YAML workflows: named sandboxes and a DAG of steps (``sbx workflow run``, ``orch.workflow``).

``load_workflow`` reads and checks a file (``LoadError`` names file, line and
field); ``run_workflow`` runs one through a ``WorkflowHost`` (an
``Orchestrator``); ``json_schema`` describes the file format.
"""

from orchestrator.workflows.loading import load_workflow
from orchestrator.workflows.model import Step, Workflow
from orchestrator.workflows.results import StepResult, WorkflowEvent, WorkflowResult
from orchestrator.workflows.runner import WorkflowError, WorkflowHost, run_workflow
from orchestrator.workflows.schema import json_schema
from orchestrator.workflows.source import LoadError, Problem

__all__ = [
    "LoadError",
    "Problem",
    "Step",
    "StepResult",
    "Workflow",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowHost",
    "WorkflowResult",
    "json_schema",
    "load_workflow",
    "run_workflow",
]
