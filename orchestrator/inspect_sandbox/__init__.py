"""sbx as an inspect_ai sandbox environment: ``--sandbox sbx`` (the ``sbx[inspect]`` extra).

Installing the extra registers this package under inspect_ai's ``inspect_ai``
entry points; importing it registers ``SbxSandboxEnvironment`` as ``sbx``.
It needs inspect_ai installed, so nothing else in sbx imports it.
"""

from orchestrator.inspect_sandbox._config import SbxSandboxConfig
from orchestrator.inspect_sandbox._environment import SbxSandboxEnvironment

__all__ = ["SbxSandboxConfig", "SbxSandboxEnvironment"]
