"""The Claude agent loop over a sandbox session (``sbx agent``, ``Orchestrator.agent``).

``loop`` starts and resumes runs, ``turns`` drives them turn by turn;
``context`` fits each request to the budget with ``images`` (screenshots
trimmed in steps), ``caching`` (breakpoints), ``budget`` (when to count) and
``compaction`` (summaries); ``request`` builds requests from ``history``;
``usage`` counts tokens and cost; ``transcript`` and ``resume`` write and read
run directories; ``calls`` talks to the Messages API.
"""

from orchestrator.agent.calls import AgentError
from orchestrator.agent.loop import resume_agent, run_agent
from orchestrator.agent.transcript import RunDirectory
from orchestrator.agent.turns import AgentResult
from orchestrator.agent.usage import Usage

__all__ = ["AgentError", "AgentResult", "RunDirectory", "Usage", "resume_agent", "run_agent"]
