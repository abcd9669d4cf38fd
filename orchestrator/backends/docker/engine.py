"""The one place that calls docker-py.

docker-py is synchronous, so every call runs in a worker thread through
``trio.to_thread.run_sync`` under a capacity limiter (decision 4), with a
deadline, and docker-py's exceptions are translated here, once, into the
``orchestrator.errors`` tree.  Nothing above ``orchestrator.backends`` sees a
docker-py type.

Calls go through the engine's circuit breaker (``resilience``): once the
engine has failed ``breaker_failures`` times in a window, calls fail fast
with ``DependencyDown`` until a probe succeeds.  Calls made with ``retry``
(create, start, remove, inspect, image loads) are tried again on transient
failures -- the engine unreachable, a 5xx that is not a permanent refusal, no
answer in time.  Removals bypass the breaker: cleaning up is always tried.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import structlog
import trio

from orchestrator.errors import (
    DependencyDown,
    EngineError,
    EngineUnavailable,
    ImageNotFound,
    SbxError,
)
from orchestrator.images.assets import known_image_names
from orchestrator.resilience import Resilience, with_retries

__all__ = ["DockerEngine", "counts_against_the_engine", "translate_docker_errors"]

T = TypeVar("T")
log = structlog.get_logger("orchestrator.docker")


def _engine_hint(base_url: str | None) -> str:
    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return (
        f"cannot reach the Docker Engine at {where}. Start it (`sudo systemctl start docker`, "
        "or `sudo dockerd &` where there is no init system), or point DOCKER_HOST "
        "(or `engine.docker_host` in sbx.toml) at a running engine; `sbx doctor` checks it"
    )


@contextlib.contextmanager
def translate_docker_errors(
    what: str, *, base_url: str | None = None, image: str | None = None
) -> Iterator[None]:
    """Map docker-py/requests exceptions to ours, naming ``what`` failed."""
    try:
        yield
    except docker.errors.ImageNotFound:
        raise ImageNotFound(image or "?", known=known_image_names()) from None
    except docker.errors.NotFound as exc:
        if image is not None and "image" in str(exc).lower():
            raise ImageNotFound(image, known=known_image_names()) from None
        raise EngineError(f"{what}: not found on the engine ({_explain(exc)})") from None
    except docker.errors.APIError as exc:
        error = EngineError(f"{what}: the engine refused: {_explain(exc)}")
        if _transient(exc):
            error.with_hint(
                retryable=True, remedy="retry; if it persists, check the engine (`docker info`)"
            )
        raise error from None
    except (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError) as exc:
        raise EngineUnavailable(_engine_hint(base_url) + f" ({exc.__class__.__name__})") from None
    except docker.errors.DockerException as exc:
        text = str(exc)
        if "Connection" in text or "connect" in text or "No such file" in text:
            raise EngineUnavailable(_engine_hint(base_url)) from None
        raise EngineError(f"{what}: {text}") from None


_PERMANENT = ("oci runtime", "executable file not found", "invalid", "no such", "not found")
"""Words of a 5xx the engine gives for a refusal that will not change if asked again."""


def _transient(exc: docker.errors.APIError) -> bool:
    """A 5xx that may pass if tried again (the engine's own trouble, not our request's)."""
    status = exc.status_code or 0
    if status < 500:
        return False
    text = _explain(exc).lower()
    return not any(word in text for word in _PERMANENT)


def counts_against_the_engine(exc: BaseException) -> bool:
    """Failures that say the engine is in trouble (for its breaker), not that a request
    was refused: unreachable, a transient 5xx, no answer in time."""
    return isinstance(exc, SbxError) and exc.retryable and not isinstance(exc, DependencyDown)


def _explain(exc: docker.errors.APIError) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc)


class DockerEngine:
    """A docker-py client whose calls run off the trio thread, bounded and timed."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        max_concurrent_calls: int = 16,
        call_timeout: float = 60.0,
        resilience: Resilience | None = None,
        tls: Any = None,
        breaker: str = "engine",
        breaker_what: str = "the Docker Engine",
    ) -> None:
        self.base_url = base_url
        self.tls = tls
        """A ``docker.tls.TLSConfig`` for a TCP engine that wants client certificates."""
        self.call_timeout = call_timeout
        self.resilience = resilience if resilience is not None else Resilience()
        # One breaker per engine: a swarm node that is down must not fail calls to the others.
        self.breaker = self.resilience.breaker(breaker, breaker_what)
        self.limiter = trio.CapacityLimiter(max_concurrent_calls)
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        """The docker-py client; made on first use, from DOCKER_HOST when no URL is set."""
        if self._client is None:
            with translate_docker_errors("connecting to the Docker Engine", base_url=self.base_url):
                if self.base_url:
                    # With TLS, the API version is fixed: asking the engine for it while
                    # connecting would go out before ``trust_env`` is off.
                    self._client = docker.DockerClient(
                        base_url=self.base_url,
                        timeout=int(self.call_timeout),
                        tls=self.tls,
                        version=None if self.tls is None else "1.41",
                    )
                    if self.tls is not None:
                        # requests would otherwise let REQUESTS_CA_BUNDLE replace our CA.
                        self._client.api.trust_env = False
                else:
                    self._client = docker.from_env(timeout=int(self.call_timeout))
        return self._client

    async def connected(self) -> docker.DockerClient:
        """``client``, made off the trio thread: making it asks the engine for its API
        version, a network round trip that must not stall the event loop (nor deadlock a
        test that serves the engine's socket from the same loop)."""
        if self._client is None:
            with trio.move_on_after(self.call_timeout):
                await trio.to_thread.run_sync(
                    lambda: self.client, abandon_on_cancel=True, limiter=self.limiter
                )
            if self._client is None:
                raise EngineUnavailable(_engine_hint(self.base_url))
        return self._client

    async def call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        timeout: float | None = None,
        image: str | None = None,
        retry: str | None = None,
        guarded: bool = True,
        before_retry: Callable[[], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker thread, translating errors.

        ``what`` names the operation for error messages; ``retry`` names it for the
        retry count (``create``, ``start``...) and makes transient failures be tried
        again, ``before_retry`` first.  ``guarded=False`` bypasses the breaker.  On
        cancellation or timeout the thread is abandoned (``abandon_on_cancel``):
        docker-py cannot be interrupted, and the call finishes or fails on its own.
        """

        async def once() -> T:
            if not guarded:
                return await self._call(what, fn, args, kwargs, timeout, image)
            with self.breaker.guard(counts_against_the_engine):
                return await self._call(what, fn, args, kwargs, timeout, image)

        if retry is None:
            return await once()
        return await with_retries(
            retry,
            once,
            policy=self.resilience.policy,
            transient=counts_against_the_engine,
            on_retry=self.resilience.retried,
            before_retry=before_retry,
        )

    async def _call(
        self,
        what: str,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        image: str | None,
    ) -> T:
        deadline = self.call_timeout if timeout is None else timeout

        def run() -> T:
            with translate_docker_errors(what, base_url=self.base_url, image=image):
                return fn(*args, **kwargs)

        try:
            with trio.fail_after(deadline):
                return await trio.to_thread.run_sync(
                    run, limiter=self.limiter, abandon_on_cancel=True
                )
        except trio.TooSlowError:
            raise EngineError(
                f"{what}: the Docker Engine did not answer within {deadline:g} s — check "
                "`docker info`, or raise `engine.call_timeout` in sbx.toml on a slow host"
            ).with_hint(retryable=True, remedy="retry; check the engine (`docker info`)") from None

    async def ping(self) -> dict[str, Any]:
        """Version information of a reachable engine, or ``EngineUnavailable``."""
        await self.call("pinging the Docker Engine", (await self.connected()).ping)
        version: dict[str, Any] = await self.call(
            "asking the Docker Engine its version", (await self.connected()).version
        )
        return version

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await trio.to_thread.run_sync(client.close)
