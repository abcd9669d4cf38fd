"""The agent loop's calls to the Messages API: a streamed turn, a token count, a summary.

Each goes through ``anthropic.AsyncAnthropic``'s beta messages resource (the
tools and context editing need beta flags), with the SDK's own retries
(``agent.max_retries``; its backoff honours ``retry-after``) and no second
layer of ours; an error the SDK gives up on becomes an ``AgentError`` that
names the status, the API's error type and request id, the retries made,
and where the transcript so far is.  Overload, 5xx and connection failures
count against the ``messages_api`` circuit breaker: while it is open, turns
fail fast with ``DependencyDown``.

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
from orchestrator.resilience import CircuitBreaker

__all__ = ["AgentError", "MessagesCaller", "TextSink"]

TextSink = Callable[[str], None]


class AgentError(SbxError):
    """The agent run could not go on (API error, missing key); the run directory is kept."""

    remedy = "see the message; `sbx agent --resume RUN_DIR` continues the run"

    def __init__(
        self, message: str, run_dir: Path | None = None, *, in_trouble: bool = False
    ) -> None:
        super().__init__(message)
        self.run_dir = run_dir
        self.in_trouble = in_trouble
        """The API itself failed (overloaded, 5xx, unreachable), not our request."""
        if in_trouble:
            self.with_hint(retryable=True, remedy="retry later; the Claude API is in trouble")


def _api_in_trouble(exc: BaseException) -> bool:
    return isinstance(exc, AgentError) and exc.in_trouble


_NOT_COUNTED = ("max_tokens", "stream", "temperature", "metadata")


class MessagesCaller:
    """One run's client of the Messages API; ``run_dir`` is named in its errors."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        run_dir: Path,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.client = client
        self.run_dir = run_dir
        self.breaker = breaker

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
        """The SDK's errors as ``AgentError``s that say what happened and where the run is,
        counted against the breaker when they say the API is in trouble."""
        if self.breaker is None:
            with self._as_agent_errors():
                yield
            return
        with self.breaker.guard(_api_in_trouble), self._as_agent_errors():
            yield

    @contextmanager
    def _as_agent_errors(self) -> Iterator[None]:
        retries = self.client.max_retries
        tried = (
            f"after {retries} retr{'y' if retries == 1 else 'ies'} (agent.max_retries)"
            if retries
            else "with retries off (agent.max_retries = 0)"
        )
        try:
            yield
        except anthropic.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            error = (body.get("error") or {}).get("type", "error") if body else "error"
            status = exc.status_code
            retried = f" {tried}" if status in (408, 409, 429) or status >= 500 else ""
            raise AgentError(
                f"the Claude API answered {status} ({error}){retried}: {exc.message} "
                f"[request id {exc.request_id or 'unknown'}]; the transcript so far is in "
                f"{self.run_dir}",
                self.run_dir,
                in_trouble=status >= 500,
            ) from None
        except anthropic.APIConnectionError as exc:
            raise AgentError(
                f"cannot reach the Claude API at {self.client.base_url} ({exc}) {tried}; check the "
                f"network, ANTHROPIC_BASE_URL or --base-url; the transcript so far is in "
                f"{self.run_dir}",
                self.run_dir,
                in_trouble=True,
            ) from None
