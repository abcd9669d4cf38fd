"""A run's conversation: the messages sent to Claude, each with the turn it belongs to.

The history is kept whole -- every image, every thinking block with its
signature -- and only ever changed in the ways the API accepts: a turn's
assistant message, that turn's tool results (all of them, in one user
message), a user's text, and a compaction, which replaces the turns before a
cut with one summary after the task.  A cut falls only before an assistant
message, so every ``tool_use`` kept still has its ``tool_result`` right after
it, and the last assistant message keeps its thinking blocks.  What a request
carries (trimmed images, cache breakpoints) is a view of this history, made
elsewhere; the history itself is never trimmed.

Must not: call the API, or reorder or edit a message once added (the cached
prefix of every later request depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SUMMARY_HEADING", "Conversation", "Entry"]

SUMMARY_HEADING = (
    "Summary of the earlier turns ({first}-{last}), written by you when the conversation grew "
    "too long for the context window; those turns are no longer shown:"
)


@dataclass(frozen=True)
class Entry:
    turn: int
    """The turn the message belongs to: 0 for the task, then 1, 2, ..."""
    message: dict[str, Any]


@dataclass
class Conversation:
    task: str
    entries: list[Entry] = field(default_factory=list)
    compactions: int = 0

    def __post_init__(self) -> None:
        if not self.entries:
            self.entries.append(Entry(0, _user([_text(self.task)])))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [entry.message for entry in self.entries]

    @property
    def last_turn(self) -> int:
        return self.entries[-1].turn

    def add_assistant(self, turn: int, content: list[dict[str, Any]]) -> None:
        self.entries.append(Entry(turn, {"role": "assistant", "content": content}))

    def add_results(self, turn: int, results: list[dict[str, Any]]) -> None:
        """The tool results of ``turn``: one user message answering its assistant message."""
        self.entries.append(Entry(turn, _user(list(results))))

    def add_user_text(self, turn: int, text: str) -> None:
        """A user's words: after the tool results when the history ends with them (one user
        message, results first, as the API wants), else as a message of their own."""
        last = self.entries[-1]
        if last.message["role"] == "user":
            content = [*last.message["content"], _text(text)]
            self.entries[-1] = Entry(last.turn, _user(content))
        else:
            self.entries.append(Entry(turn, _user([_text(text)])))

    def pending_tool_uses(self) -> list[dict[str, Any]]:
        """The ``tool_use`` blocks of the last assistant message, when nothing answers them yet."""
        last = self.entries[-1].message
        if last["role"] != "assistant":
            return []
        return [block for block in last["content"] if block.get("type") == "tool_use"]

    def cut_points(self) -> list[int]:
        """Indexes where a compaction may cut: each assistant message but the first reply to
        the task (something must be left to summarise)."""
        return [
            index
            for index, entry in enumerate(self.entries)
            if index > 1 and entry.message["role"] == "assistant"
        ]

    def compact(self, summary: str, cut: int) -> tuple[int, int]:
        """Replace the messages before ``cut`` with the task and ``summary``; the turns
        summarised (first, last)."""
        if cut not in self.cut_points():
            raise ValueError(f"cannot cut the conversation at message {cut}")
        first, last = 1, self.entries[cut - 1].turn  # earlier summaries are summarised too
        heading = SUMMARY_HEADING.format(first=first, last=last)
        opening = Entry(0, _user([_text(self.task), _text(f"{heading}\n\n{summary}")]))
        self.entries = [opening, *self.entries[cut:]]
        self.compactions += 1
        return first, last

    def index_of_turn(self, turn: int) -> int:
        """The index of ``turn``'s assistant message."""
        for index, entry in enumerate(self.entries):
            if entry.turn == turn and entry.message["role"] == "assistant":
                return index
        raise KeyError(f"turn {turn} has no assistant message in the conversation")


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _user(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "user", "content": content}
