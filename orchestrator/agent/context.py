"""The context of a run: each request built to fit ``agent.context_budget``.

Before a turn, the request is built (images trimmed, breakpoints placed) and
its size estimated from the last prompt the API counted plus what was added
since (``budget``).  Near the budget, ``count_tokens`` gives the exact size;
over it, the conversation is compacted (``compaction``), keeping
``agent.compact_keep_turns`` turns, then fewer if that is still too much,
until the request fits -- or the run cannot go on (``ContextFull``: the loop
stops with stop reason ``context_budget``).  With context editing on (and a
model that takes it), the count is of the prompt as the API will edit it.

Must not: run tools or stream turns (the loop does).
"""

from __future__ import annotations

from typing import Any

from orchestrator.agent.budget import ContextBudget
from orchestrator.agent.calls import MessagesCaller
from orchestrator.agent.compaction import Compactor, ContextFull
from orchestrator.agent.history import Conversation
from orchestrator.agent.request import Built, RequestPlan
from orchestrator.agent.transcript import RunDirectory
from orchestrator.agent.usage import Ledger, Usage
from orchestrator.config import AgentConfig

__all__ = ["ContextFull", "ContextManager", "context_edits"]


def context_edits(settings: AgentConfig) -> dict[str, Any]:
    """The ``context_management`` parameter: clear old tool results past 3/4 of the budget,
    keeping the newest few (as many as the images kept, at least 3) and the memory tool's."""
    edit: dict[str, Any] = {
        "type": "clear_tool_uses_20250919",
        "keep": {"type": "tool_uses", "value": max(3, settings.keep_images)},
        "exclude_tools": ["memory"],
    }
    if settings.context_budget:
        edit["trigger"] = {"type": "input_tokens", "value": settings.context_budget * 3 // 4}
        edit["clear_at_least"] = {"type": "input_tokens", "value": settings.context_budget // 10}
    return {"edits": [edit]}


class ContextManager:
    def __init__(
        self, plan: RequestPlan, caller: MessagesCaller, run: RunDirectory, ledger: Ledger
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.caller = caller
        self.run = run
        self.budget = ContextBudget(plan.settings.context_budget)
        self.compactor = Compactor(plan, caller, run, ledger)

    async def _count(self, built: Built, turn: int) -> int:
        tokens = await self.caller.count(built.params)
        estimate = self.budget.estimate(built.params)
        self.run.record("count_tokens", turn=turn, input_tokens=tokens, estimate=estimate)
        return tokens

    async def next_request(self, conversation: Conversation, turn: int) -> Built:
        """The request of ``turn``, under the budget; ``ContextFull`` if it cannot be."""
        built = self.plan.build(conversation)
        if not self.budget.needs_count(built.params):
            return built
        tokens = await self._count(built, turn)
        keep = self.settings.compact_keep_turns
        while tokens > self.budget.budget:
            if not self.settings.compaction:
                raise ContextFull(
                    f"the next request has {tokens} input tokens, over agent.context_budget "
                    f"({self.budget.budget}), and agent.compaction is off"
                )
            if keep < 1:
                raise ContextFull(
                    f"even the newest turn alone takes {tokens} input tokens, over "
                    f"agent.context_budget ({self.budget.budget})"
                )
            await self.compactor.compact(conversation, keep, turn)
            self.budget.forget()
            built = self.plan.build(conversation)
            tokens = await self._count(built, turn)
            keep -= 1
        self.budget.observed(tokens)
        return built

    def answered(self, usage: Usage) -> None:
        """The API's count of the prompt it just answered."""
        self.budget.observed(usage.prompt_tokens)

    def added(self, content: Any) -> None:
        """Content appended to the conversation after that prompt."""
        self.budget.add(content)
