"""The Claude agent loop over a sandbox session (``sbx agent``, ``Orchestrator.agent``)."""

from orchestrator.agent.loop import AgentError, AgentResult, run_agent
from orchestrator.agent.transcript import RunDirectory

__all__ = ["AgentError", "AgentResult", "RunDirectory", "run_agent"]
