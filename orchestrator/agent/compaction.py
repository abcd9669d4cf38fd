"""Compaction: the model summarises the older turns, and the summary takes their place.

The conversation is cut before an assistant message, keeping the newest
turns word for word; everything before the cut (the task, earlier summaries,
the turns) is sent once more with an instruction to summarise it, tools
forbidden, and the answer replaces it: the task and the summary open the
conversation, then the kept turns with their tool calls and results, in
pairs, as the API requires.  The summary request repeats the prefix of the
turn requests, so the cache serves most of it.

A summary request must fit the budget too.  When the part to summarise is
itself too large, its older half is summarised first (recursively), then
the rest with that summary at its head.

Each compaction is a ``compaction`` event in the transcript, with the summary
and the first turn kept, from which a resumed run rebuilds the same history.

Must not: decide when to compact (``context`` does), or cut anywhere but
before an assistant message.
"""

from __future__ import annotations

from typing import Any

from orchestrator.agent.budget import COUNT_FROM, estimate_tokens
from orchestrator.agent.calls import MessagesCaller
from orchestrator.agent.history import Conversation
from orchestrator.agent.request import RequestPlan
from orchestrator.agent.transcript import RunDirectory
from orchestrator.agent.usage import Ledger, Usage

__all__ = ["MAX_DEPTH", "Compactor", "ContextFull"]

MAX_DEPTH = 6


class ContextFull(Exception):
    """The conversation cannot be brought under the context budget."""


class Compactor:
    def __init__(
        self, plan: RequestPlan, caller: MessagesCaller, run: RunDirectory, ledger: Ledger
    ) -> None:
        self.plan = plan
        self.caller = caller
        self.run = run
        self.ledger = ledger
        self.budget = plan.settings.context_budget

    async def compact(self, conversation: Conversation, keep_turns: int, turn: int) -> None:
        """Summarise all but the newest ``keep_turns`` turns (fewer if there are fewer)."""
        cuts = conversation.cut_points()
        if not cuts:
            raise ContextFull("there is nothing left to summarise")
        cut = cuts[-min(keep_turns, len(cuts))]
        await self._summarise_before(conversation, cut, turn, 0)

    async def _fits(self, params: dict[str, Any], turn: int) -> bool:
        if not self.budget:
            return True
        parts = ("tools", "system", "messages")
        estimate = sum(estimate_tokens(params.get(part) or []) for part in parts)
        if estimate < COUNT_FROM * self.budget:
            return True
        tokens = await self.caller.count(params)
        self.run.record("count_tokens", turn=turn, input_tokens=tokens, purpose="summary")
        return tokens <= self.budget

    async def _summarise_before(
        self, conversation: Conversation, cut: int, turn: int, depth: int
    ) -> None:
        while True:
            built = self.plan.build_summary(conversation, cut)
            if await self._fits(built.params, turn):
                break
            earlier = [index for index in conversation.cut_points() if index < cut]
            if not earlier or depth >= MAX_DEPTH:
                raise ContextFull(
                    "the turns to summarise do not fit agent.context_budget even in parts"
                )
            kept_turn = conversation.entries[cut].turn
            depth += 1
            await self._summarise_before(conversation, earlier[len(earlier) // 2], turn, depth)
            cut = conversation.index_of_turn(kept_turn)
        message = await self.caller.create(built.params)
        usage = Usage.of(message.usage)
        self.ledger.add(usage)
        texts = [b.text for b in message.content if getattr(b, "type", "") == "text" and b.text]
        summary = "\n".join(texts) or "(the summary came back empty)"
        kept_from = conversation.entries[cut].turn
        before = len(conversation.entries)
        first, last = conversation.compact(summary, cut)
        self.run.record(
            "compaction",
            turn=turn,
            summarised_turns=[first, last],
            kept_from_turn=kept_from,
            messages_before=before,
            messages_after=len(conversation.entries),
            summary=summary,
            usage=usage.record(),
        )
