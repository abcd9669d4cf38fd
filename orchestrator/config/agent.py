"""``[agent]``: the Claude agent loop -- its context, its prices, and who may call which API.

Two concerns share the table because they concern the same runs:

* the context of a run (``sbx agent``, ``Orchestrator.agent`` and runs over
  the HTTP API alike): how many screenshots a request carries, prompt
  caching, the token budget a request must stay under, compaction, context
  editing, and the prices a run's cost is estimated with;
* for runs started over the HTTP API only: which Messages API they may call
  and with whose key (a tenant must never make the server send its key, or
  any request, to an address the operator did not choose).

Must not: read files or the environment (``loading`` does; the API reads the
key variable a token names when a run starts), or import anything of the
orchestrator above the configuration.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from orchestrator.config.api_sections import OWNER_PATTERN, normalize_base_url
from orchestrator.config.sections import _Section

__all__ = ["DEFAULT_PRICES", "AgentConfig", "ModelPrice"]


class ModelPrice(_Section):
    """What a model's tokens cost, in US dollars per million tokens."""

    input: float = Field(ge=0, description="Uncached input tokens.")
    output: float = Field(ge=0, description="Output tokens (thinking included).")
    cache_read: float = Field(ge=0, description="Input tokens read from the prompt cache.")
    cache_write: float = Field(ge=0, description="Input tokens written to the cache (5 minutes).")


def _price(input: float, output: float, cache_read: float, cache_write: float) -> ModelPrice:
    return ModelPrice(input=input, output=output, cache_read=cache_read, cache_write=cache_write)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": _price(5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-5": _price(5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-1": _price(15.0, 75.0, 1.5, 18.75),
    "claude-opus-4": _price(15.0, 75.0, 1.5, 18.75),
    "claude-sonnet-4-6": _price(3.0, 15.0, 0.3, 3.75),
    "claude-sonnet-4-5": _price(3.0, 15.0, 0.3, 3.75),
    "claude-sonnet-4": _price(3.0, 15.0, 0.3, 3.75),
    "claude-3-7-sonnet": _price(3.0, 15.0, 0.3, 3.75),
    "claude-haiku-4-5": _price(1.0, 5.0, 0.1, 1.25),
    "claude-3-5-haiku": _price(0.8, 4.0, 0.08, 1.0),
}
"""The published list prices of the models ``orchestrator.tools.versions`` knows."""


class AgentConfig(_Section):
    """The agent loop's context management and cost, and agent runs over the HTTP API."""

    max_retries: int = Field(
        default=2,
        ge=0,
        le=20,
        description="Retries of a failed Messages API request, by the anthropic SDK (which "
        "backs off and honours retry-after): overloaded (529), 5xx, 429, timeouts.",
    )
    keep_images: int = Field(
        default=3,
        ge=0,
        description="The most images (screenshots) one request carries; older ones become a "
        "short text placeholder. 0 sends every image.",
    )
    image_trim_step: int = Field(
        default=2,
        ge=1,
        description="Images are replaced this many at a time, so the cached prefix of a "
        "request survives several turns; at most keep_images.",
    )
    prompt_caching: bool = Field(
        default=True,
        description="cache_control breakpoints on the tools, the system prompt and the "
        "conversation's recent turns.",
    )
    context_budget: int = Field(
        default=150_000,
        ge=0,
        description="The most input tokens one request may carry; a request that may cross it "
        "is counted (count_tokens) and the conversation compacted. 0: no budget.",
    )
    compaction: bool = Field(
        default=True,
        description="When the next request would exceed context_budget, the model summarises "
        "the older turns into one message; off, the run stops there (context_budget).",
    )
    compact_keep_turns: int = Field(
        default=4, ge=1, description="Turns kept word for word after a compaction."
    )
    summary_max_tokens: int = Field(
        default=2048, ge=256, description="The longest summary a compaction may write."
    )
    context_editing: bool = Field(
        default=False,
        description="Where the model supports the API's context-editing beta, the API clears "
        "old tool results itself past three quarters of context_budget; compaction then acts "
        "only when the edited prompt still exceeds the budget (with compaction off, context "
        "editing is used instead).",
    )
    snapshot_on_stop: bool = Field(
        default=False,
        description="When a run stops, keep its sandbox's files as a snapshot image (named in "
        "the transcript), so that --resume goes on from them rather than from a fresh "
        "sandbox. Not for runs in a session their caller keeps open.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="$ per million tokens by model id (the longest id a model's starts with); "
        "entries given are added to (or replace) the built-in list prices.",
    )
    allowed_base_urls: list[str] = Field(
        default_factory=list,
        description="Messages API base URLs a non-admin token may name as a run's base_url "
        "(compared whole, normalised); admins may name any.",
    )
    share_server_key: bool | list[str] = Field(
        default=False,
        description="Who may run on the server's own ANTHROPIC_API_KEY: false, admin tokens "
        "only; a list, those owners too; true, every token.",
    )

    @model_validator(mode="after")
    def _step_within_keep(self) -> AgentConfig:
        if self.keep_images and self.image_trim_step > self.keep_images:
            raise ValueError(
                f"agent.image_trim_step = {self.image_trim_step} is over agent.keep_images = "
                f"{self.keep_images}: images are replaced at most keep_images at a time; lower "
                "the step or raise keep_images"
            )
        if self.context_budget and self.context_budget < 1024:
            raise ValueError(
                f"agent.context_budget = {self.context_budget} is too small for any request "
                "(tools and system prompt alone take hundreds of tokens); give 1024 or more, or "
                "0 for no budget"
            )
        return self

    @field_validator("prices")
    @classmethod
    def _over_the_defaults(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        """A file that prices one model keeps the list prices of the others."""
        return {**DEFAULT_PRICES, **value}

    @field_validator("allowed_base_urls")
    @classmethod
    def _plain_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if normalize_base_url(url) is None:
                raise ValueError(
                    f"{url!r} is not a plain http(s)://host[:port][/path] URL (no user info, "
                    "query or fragment)"
                )
        return value

    @field_validator("share_server_key")
    @classmethod
    def _owner_names(cls, value: bool | list[str]) -> bool | list[str]:
        if isinstance(value, list):
            for owner in value:
                if not isinstance(owner, str) or not re.fullmatch(OWNER_PATTERN, owner):
                    raise ValueError(f"{owner!r} is not a token owner's name")
        return value

    def price_of(self, model: str) -> ModelPrice | None:
        """The price of ``model``: its own entry, else the longest entry it extends
        (``claude-sonnet-4-5-20250929`` is priced as ``claude-sonnet-4-5``)."""
        if model in self.prices:
            return self.prices[model]
        matches = [key for key in self.prices if model.startswith(key + "-")]
        return self.prices[max(matches, key=len)] if matches else None

    def allowed_base_url(self, url: str) -> str | None:
        """The entry of ``allowed_base_urls`` that ``url`` is (normalised), or ``None``."""
        wanted = normalize_base_url(url)
        if wanted is None:
            return None
        return next((a for a in self.allowed_base_urls if normalize_base_url(a) == wanted), None)

    def shares_server_key_with(self, owner: str) -> bool:
        """Whether a non-admin token of ``owner`` may run on the server's own key."""
        if isinstance(self.share_server_key, bool):
            return self.share_server_key
        return owner in self.share_server_key
