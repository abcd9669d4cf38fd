"""The agent loop's calls to the Messages API: a streamed turn, a token count, a summary.

Each goes through ``anthropic.AsyncAnthropic``'s beta messages resource (the
tools and context editing need beta flags), with the SDK's own retries; an
error the SDK gives up on becomes an ``AgentError`` that names the status,
the API's error type and request id, and where the transcript so far is.

Must not: decide what a request carries (``context`` does) or keep any state
of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic

from orchestrator.errors import SbxError

__all__ = ["AgentError", "MessagesCaller", "TextSink"]

TextSink = Callable[[str], None]


class AgentError(SbxError):
    """The agent run could not go on (API error, missing key); the run directory is kept."""

    def __init__(self, message: str, run_dir: Path | None = None) -> None:
        super().__init__(message)
        self.run_dir = run_dir


_NOT_COUNTED = ("max_tokens", "stream", "temperature", "metadata")


class MessagesCaller:
    """One run's client of the Messages API; ``run_dir`` is named in its errors."""

    def __init__(self, client: anthropic.AsyncAnthropic, run_dir: Path) -> None:
        self.client = client
        self.run_dir = run_dir

    async def turn(self, params: dict[str, Any], on_text: TextSink | None) -> Any:
        """One streamed turn; its text goes to ``on_text`` as it arrives."""
        with self._translated():
            async with self.client.beta.messages.stream(**params) as stream:
                async for event in stream:
                    if event.type == "text" and on_text is not None:
                        on_text(event.text)
                message = await stream.get_final_message()
        if on_text is not None:
            on_text("\n")
        return message

    async def count(self, params: dict[str, Any]) -> int:
        """The input tokens of the request ``params`` would make (``count_tokens``)."""
        counted = {k: v for k, v in params.items() if k not in _NOT_COUNTED}
        with self._translated():
            answer = await self.client.beta.messages.count_tokens(**counted)
        return int(answer.input_tokens)

    async def create(self, params: dict[str, Any]) -> Any:
        """One turn, not streamed (a compaction's summary)."""
        with self._translated():
            return await self.client.beta.messages.create(**params)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """The SDK's errors as ``AgentError``s that say what happened and where the run is."""
        try:
            yield
        except anthropic.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            error = (body.get("error") or {}).get("type", "error") if body else "error"
            raise AgentError(
                f"the Claude API answered {exc.status_code} ({error}): {exc.message} "
                f"[request id {exc.request_id or 'unknown'}]; the transcript so far is in "
                f"{self.run_dir}",
                self.run_dir,
            ) from None
        except anthropic.APIConnectionError as exc:
            raise AgentError(
                f"cannot reach the Claude API at {self.client.base_url} ({exc}); check the "
                f"network, ANTHROPIC_BASE_URL or --base-url; the transcript so far is in "
                f"{self.run_dir}",
                self.run_dir,
            ) from None
