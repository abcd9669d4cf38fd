"""What one request to the Messages API carries, made from the conversation.

A ``RequestPlan`` holds what stays the same for a whole run (model, tools,
system prompt, betas, thinking, the context settings) and builds each
request from the conversation: images trimmed (``images``), breakpoints
placed (``caching``), thinking enabled when asked, and the context-editing
edit when the model takes it.  It also builds a compaction's summary
request: the same prefix as the turn requests (so it reads their cache), cut
before the turns that are kept, with the instruction to summarise after it,
tools forbidden.

Must not: call the API, or change the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.agent.caching import mark_messages, mark_system, mark_tools
from orchestrator.agent.history import Conversation
from orchestrator.agent.images import trim_images
from orchestrator.config import AgentConfig

__all__ = ["SUMMARY_INSTRUCTION", "Built", "RequestPlan"]

SUMMARY_INSTRUCTION = (
    "The conversation so far is about to be replaced by a summary, because it has grown too "
    "long for the context window. Write that summary now, for yourself: the task; what you have "
    "done and found (facts, file paths, commands, values, the state of the screen and of "
    "files); what did not work; and what remains to be done next. Be specific: the earlier "
    "turns will be gone. Answer with the summary only."
)


@dataclass(frozen=True)
class Built:
    params: dict[str, Any]
    """Keyword arguments of ``client.beta.messages.stream`` / ``create`` / ``count_tokens``."""
    images: int
    """Images the request carries."""
    replaced: int
    """Images of the conversation replaced by a placeholder."""


@dataclass(frozen=True)
class RequestPlan:
    model: str
    max_tokens: int
    system: str
    tools: list[dict[str, Any]]
    betas: list[str]
    settings: AgentConfig
    thinking_budget: int | None = None
    context_edits: dict[str, Any] | None = None
    """The ``context_management`` parameter, when context editing is on for this model."""

    def _view(self, conversation: Conversation) -> Any:
        turns = [entry.turn for entry in conversation.entries]
        return trim_images(
            conversation.messages,
            self.settings.keep_images,
            self.settings.image_trim_step,
            turns,
        )

    def _common(self) -> dict[str, Any]:
        caching = self.settings.prompt_caching
        params: dict[str, Any] = {
            "model": self.model,
            "system": mark_system(self.system) if caching else self.system,
            "tools": mark_tools(self.tools) if caching else list(self.tools),
        }
        if self.betas:
            params["betas"] = list(self.betas)
        return params

    def build(self, conversation: Conversation) -> Built:
        """The request of the next turn."""
        view = self._view(conversation)
        messages = view.messages
        if self.settings.prompt_caching:
            messages = mark_messages(messages, view.first_carried)
        params = {**self._common(), "max_tokens": self.max_tokens, "messages": messages}
        if self.thinking_budget:
            params["thinking"] = {"type": "enabled", "budget_tokens": self.thinking_budget}
        if self.context_edits is not None:
            params["context_management"] = self.context_edits
        return Built(params, view.carried, view.replaced)

    def build_summary(self, conversation: Conversation, cut: int) -> Built:
        """The request that summarises the messages before index ``cut``."""
        view = self._view(conversation)
        messages = [_without_thinking(m) for m in view.messages[:cut]]
        last = messages[-1]
        instruction = {"type": "text", "text": SUMMARY_INSTRUCTION}
        messages[-1] = {**last, "content": [*last["content"], instruction]}
        if self.settings.prompt_caching:
            stable = view.first_carried if view.first_carried is not None else cut
            messages = mark_messages(messages, min(stable, cut), mark_last=False)
        params = {
            **self._common(),
            "max_tokens": self.settings.summary_max_tokens,
            "messages": messages,
            "tool_choice": {"type": "none"},
        }
        images = sum(
            1
            for m in messages
            for b in m["content"]
            for part in ([b, *b["content"]] if isinstance(b.get("content"), list) else [b])
            if part.get("type") == "image"
        )
        return Built(params, images, view.replaced)


def _without_thinking(message: dict[str, Any]) -> dict[str, Any]:
    """A summary request has thinking off: earlier thinking blocks are left out."""
    if message.get("role") != "assistant":
        return message
    thinking = ("thinking", "redacted_thinking")
    content = [b for b in message["content"] if b.get("type") not in thinking]
    return {**message, "content": content or [{"type": "text", "text": "(no text)"}]}
