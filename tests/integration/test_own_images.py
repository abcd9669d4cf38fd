"""Images of the user's own: built with ``docker build`` FROM ours, without Python, USER root,
a repository at /app -- commands, tools and file calls run in them all the same."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import docker
import pytest

from orchestrator import Orchestrator
from orchestrator.errors import GuestError

from ..toolcalls import use

TAG = "sbxtest-own-image:latest"

DOCKERFILE = b"""FROM sbx-base:latest
USER root
RUN rm -rf /usr/bin/python3* /usr/lib/python3* && mkdir -p /app/src \\
    && printf 'print("hi")\\n' > /app/src/main.py && echo "the repository" > /app/README
WORKDIR /app
ENV APP_MODE=evaluation
CMD ["sleep", "infinity"]
"""


def _built(client: docker.DockerClient, dockerfile: bytes, tag: str) -> Iterator[str]:
    """``tag``, built from ``dockerfile`` alone, for the block; removed afterwards."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    yield tag
    client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def own_image(docker_client: docker.DockerClient) -> Iterator[str]:
    yield from _built(docker_client, DOCKERFILE, TAG)


async def test_an_image_without_python_runs_commands_tools_and_file_calls(
    orch: Orchestrator, own_image: str
) -> None:
    async with orch.session(image=own_image, memories=False) as s:
        where = await s.exec("pwd; echo $APP_MODE; id -u; command -v python3 || echo none")
        assert where.stdout_text.split() == ["/app", "evaluation", "1000", "none"], where
        assert await s.read_file("/app/README") == b"the repository\n"
        await s.write_file("/workspace/notes.txt", "written\n")
        assert (await s.exec("cat /workspace/notes.txt")).stdout == b"written\n"
        results = await s.run_tools(
            [
                use("bash", {"command": "ls /app/src"}),
                use("str_replace_based_edit_tool", {"command": "view", "path": "/app/src/main.py"}),
            ]
        )
        assert "main.py" in str(results[0]["content"])
        assert 'print("hi")' in str(results[1]["content"])
        with pytest.raises(GuestError, match="code execution needs Python"):
            await s.run_code("1 + 1")
        # The image's USER root is not taken without asking for it.
        assert (await s.info())["user"]["user_uid"] == 1000


BARE_TAG = "sbxtest-bare-image:latest"

BARE_DOCKERFILE = b"""FROM sbx-base:latest AS parts
FROM scratch
COPY --from=parts /bin/dash /bin/sh
COPY --from=parts /bin/cat /bin/
COPY --from=parts /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/
COPY --from=parts /lib64/ld-linux-x86-64.so.2 /lib64/
"""


@pytest.fixture(scope="module")
def bare_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """An image that is no distribution at all: a shell, cat and the C library."""
    yield from _built(docker_client, BARE_DOCKERFILE, BARE_TAG)


async def test_an_image_with_nothing_but_a_shell_runs_commands_and_file_calls(
    orch: Orchestrator, bare_image: str
) -> None:
    # No passwd, no Python, no package manager: the guest comes from its own bundle.
    async with orch.session(image=bare_image, memories=False) as s:
        said = await s.exec(["sh", "-c", "echo from $0 in $PWD"])
        assert said.stdout == b"from sh in /workspace\n", said
        await s.write_file("/workspace/in.txt", b"bare\n")
        assert (await s.exec(["cat", "/workspace/in.txt"])).stdout == b"bare\n"
        with pytest.raises(GuestError, match="persistent shells need /bin/bash in the image"):
            await s.shell("echo no bash")
        missing = await s.exec(["python3", "-c", "1"])
        assert missing.exit_code == 127 and missing.spawn_error == "not_found", missing
