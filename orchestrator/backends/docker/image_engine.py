"""The image builder's engine on Docker: ``orchestrator.images.engine.ImageEngine`` for docker-py.

The builder (``orchestrator.images.builder``) plans builds and assembles
images on the host; this module does the parts only the Docker Engine can:
inspecting, tagging and removing images, streaming a docker-save archive to
``POST /images/load``, and the build containers of ``--base IMAGE``
(create, copy in, start, follow, wait, commit, remove).

Must not: decide what to build, or let a docker-py type or exception out
(every call goes through ``DockerEngine.call``, which translates them); a
build container never outlives its block (force-removed, shielded).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import docker
import requests.exceptions
import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.config import Config
from orchestrator.errors import EngineError, ImageBuildError, ImageNotFound
from orchestrator.images.engine import EngineImage, ImageSettings

__all__ = [
    "DockerBuildContainer",
    "DockerBuildContainers",
    "DockerImageEngine",
    "docker_image_engine",
]


def _parse_created(value: Any) -> datetime | None:
    """The engine's RFC 3339 time with nanoseconds, which ``fromisoformat`` may refuse."""
    if not isinstance(value, str) or not value:
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", value)
    if not match:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = match.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")
    except ValueError:
        return None


def _engine_image(attrs: dict[str, Any]) -> EngineImage:
    """``docker image inspect`` output as the builder reads it."""
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    return EngineImage(
        id=attrs.get("Id") or "",
        tags=tuple(attrs.get("RepoTags") or ()),
        labels={key: value for key, value in labels.items() if isinstance(value, str)},
        layers=tuple((attrs.get("RootFS") or {}).get("Layers") or ()),
        user=config.get("User"),
        size=int(attrs["Size"]) if "Size" in attrs else None,
        created=_parse_created(attrs.get("Created")),
    )


class DockerImageEngine:
    """``ImageEngine`` on the Docker Engine that ``engine`` reaches."""

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine

    async def inspect_image(self, ref: str) -> EngineImage | None:
        api = (await self.engine.connected()).api
        try:
            attrs: dict[str, Any] = await self.engine.call(
                f"inspecting image {ref}", api.inspect_image, ref, image=ref, retry="inspect"
            )
        except ImageNotFound:
            return None
        return _engine_image(attrs)

    async def list_images(self) -> list[EngineImage]:
        """Every image the engine holds (``ImageCatalog``): ``docker images -a``."""
        api = (await self.engine.connected()).api
        rows: list[dict[str, Any]] = await self.engine.call(
            "listing the engine's images", api.images, all=True
        )
        return [
            EngineImage(
                id=str(row.get("Id") or ""),
                tags=tuple(row.get("RepoTags") or ()),
                labels={k: v for k, v in (row.get("Labels") or {}).items() if isinstance(v, str)},
                size=int(row["Size"]) if isinstance(row.get("Size"), int) else None,
                created=datetime.fromtimestamp(row["Created"], UTC)
                if isinstance(row.get("Created"), int)
                else None,
            )
            for row in rows or []
        ]

    async def tag_image(self, image: str, repo: str, tag: str) -> None:
        api = (await self.engine.connected()).api
        await self.engine.call(f"tagging {repo}:{tag}", api.tag, image, repo, tag)

    async def remove_image(self, ref: str, *, what: str) -> None:
        api = (await self.engine.connected()).api
        await self.engine.call(what, api.remove_image, ref)

    async def image_tags(self, label: str) -> list[str]:
        api = (await self.engine.connected()).api
        images = await self.engine.call(
            "listing sandbox images", api.images, filters={"label": label}
        )
        return [tag for image in images or [] for tag in image.get("RepoTags") or []]

    def retried(self, operation: str, reason: str) -> None:
        self.engine.resilience.retried(operation, reason)

    async def load_image_archive(
        self,
        image: str,
        archive: Iterable[bytes],
        *,
        should_stop: Callable[[], bool],
        on_unpacking: Callable[[int, int], None],
        timeout: float,
    ) -> None:
        def load() -> None:
            api = self.engine.client.api
            url = f"{api.base_url}/v{api.api_version}/images/load"
            try:
                response = api.post(
                    url,
                    data=archive,
                    params={"quiet": "0"},
                    headers={"Content-Type": "application/x-tar"},
                    stream=True,
                    timeout=(60, timeout),
                )
                with contextlib.closing(response):
                    if response.status_code >= 400:
                        raise ImageBuildError(
                            f"the engine refused the image archive for {image} "
                            f"(HTTP {response.status_code}: {response.text.strip()[:300]}) — "
                            "check `docker info` and the engine's log"
                        ).with_hint(retryable=response.status_code >= 500)
                    for raw in response.iter_lines():
                        if should_stop():
                            return
                        if not raw:
                            continue
                        item = json.loads(raw)
                        error = item.get("errorDetail", {}).get("message") or item.get("error")
                        if error:
                            raise ImageBuildError(
                                f"the engine could not load {image}: {error} — run "
                                "`sbx images build --force` to rebuild its layers"
                            )
                        detail = item.get("progressDetail") or {}
                        if detail.get("total"):
                            on_unpacking(detail.get("current", 0), detail["total"])
            except requests.exceptions.RequestException as exc:
                if should_stop():
                    return
                raise ImageBuildError(
                    f"loading {image} into the engine failed: {exc} — check that the "
                    "engine is healthy (`docker info`) and has free space in /var/lib/docker"
                ).with_hint(
                    retryable=isinstance(exc, requests.exceptions.ConnectionError)
                ) from None

        await self.engine.call(f"loading {image} into the engine", load, timeout=timeout)

    @contextlib.asynccontextmanager
    async def build_containers(
        self, *, long_call_timeout: float
    ) -> AsyncIterator[DockerBuildContainers]:
        containers = DockerBuildContainers(self.engine, long_call_timeout)
        try:
            yield containers
        finally:
            if containers.long_api is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(containers.long_api.close)

    async def aclose(self) -> None:
        await self.engine.aclose()


class DockerBuildContainers:
    """``BuildContainers`` on Docker, with a second client for the calls that take minutes."""

    def __init__(self, engine: DockerEngine, long_call_timeout: float) -> None:
        self.engine = engine
        self.long_call_timeout = long_call_timeout
        self.long_api: Any = None
        """A docker-py client whose HTTP timeout covers long calls (commit, following logs)."""

    async def long_calls(self) -> Any:
        """A client for calls that legitimately stay silent for minutes.

        The engine's shared client gives up on a response after
        ``engine.call_timeout``; ``docker commit`` of a big layer or a quiet
        ``apt-get`` step in a build container can take longer, and the
        build's own deadline already bounds them.  Made on first use,
        closed when the build's ``build_containers`` block ends.
        """
        if self.long_api is None:
            timeout = int(self.long_call_timeout)
            base_url = self.engine.base_url

            def connect() -> Any:
                if base_url:
                    return docker.APIClient(base_url=base_url, timeout=timeout)
                return docker.from_env(timeout=timeout).api

            self.long_api = await self.engine.call("connecting to the Docker Engine", connect)
        return self.long_api

    @contextlib.asynccontextmanager
    async def create(
        self, parent: str, *, name: str, script: str
    ) -> AsyncIterator[DockerBuildContainer]:
        api = (await self.engine.connected()).api
        created = await self.engine.call(
            f"creating build container from {parent}",
            api.create_container,
            parent,
            entrypoint=["/bin/sh", "-c", script],
            user="0:0",
            working_dir="/",
            name=name,
        )
        container = DockerBuildContainer(self, created["Id"], name)
        try:
            yield container
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(EngineError):
                await self.engine.call(
                    f"removing {name}",
                    api.remove_container,
                    container.id,
                    force=True,
                    timeout=60,
                )


class DockerBuildContainer:
    """``BuildContainer`` on Docker: one container of ``containers``, by id."""

    def __init__(self, containers: DockerBuildContainers, container_id: str, name: str) -> None:
        self.containers = containers
        self.engine = containers.engine
        self.id = container_id
        self.name = name

    async def copy_in(self, directory: str, archive: bytes, *, what: str) -> None:
        api = (await self.engine.connected()).api
        await self.engine.call(what, api.put_archive, self.id, directory, archive)

    async def start(self) -> None:
        api = (await self.engine.connected()).api
        await self.engine.call(f"starting {self.name}", api.start, self.id)

    async def follow_output(
        self, on_output: Callable[[bytes], None], *, what: str, timeout: float
    ) -> None:
        api = await self.containers.long_calls()

        def follow() -> None:
            stream = api.logs(self.id, stream=True, follow=True)
            try:
                for chunk in stream:
                    with contextlib.suppress(trio.RunFinishedError, RuntimeError):
                        trio.from_thread.run_sync(on_output, chunk)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

        await self.engine.call(what, follow, timeout=timeout)

    async def wait(self, *, timeout: float) -> int:
        api = await self.containers.long_calls()
        result = await self.engine.call(
            f"waiting for {self.name}", api.wait, self.id, timeout=timeout
        )
        return int(result.get("StatusCode", -1))

    async def output_tail(self, lines: int) -> str:
        api = (await self.engine.connected()).api
        logs = await self.engine.call(
            f"reading the log of {self.name}", api.logs, self.id, tail=lines
        )
        return logs.decode("utf-8", "replace") if isinstance(logs, bytes) else str(logs)

    async def commit(self, repo: str, tag: str, settings: ImageSettings, *, timeout: float) -> None:
        api = await self.containers.long_calls()
        conf = {
            "User": settings.user,
            "WorkingDir": settings.working_dir,
            "Entrypoint": list(settings.entrypoint),
            "Cmd": None,
            "Env": list(settings.env),
            "Labels": dict(settings.labels),
        }
        await self.engine.call(
            f"committing {repo}:{tag}",
            api.commit,
            self.id,
            repository=repo,
            tag=tag,
            conf=conf,
            timeout=timeout,
        )


def docker_image_engine(config: Config) -> DockerImageEngine:
    """The image engine of the configured Docker Engine (``engine.backend = "docker"``)."""
    return DockerImageEngine(
        DockerEngine(
            config.engine.docker_host,
            max_concurrent_calls=config.engine.max_concurrent_calls,
            call_timeout=config.engine.call_timeout,
        )
    )
