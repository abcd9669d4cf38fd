"""``python -m orchestrator.cli``: the same as the ``sbx`` command."""

from orchestrator.cli import entry

entry()
