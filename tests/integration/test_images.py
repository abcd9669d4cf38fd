"""The real images, built by ``ImageBuilder`` on the real engine, meet the image contract.

The first test run on a machine bootstraps all three images (minutes); after
that the build is a label check, so these tests also prove that an unchanged
rebuild is a no-op.  Other integration suites rely on the images this leaves
behind, tagged ``sbx-<name>:latest`` and ``sbx-<name>:<recipe hash>``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import pytest
import trio

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.backends.docker.image_engine import DockerImageEngine
from orchestrator.config import ImagesConfig
from orchestrator.images.builder import ImageBuilder
from orchestrator.images.guest_bundle import guest_command
from orchestrator.images.image_contents import STANDARD_PATH
from orchestrator.images.models import BuildOutcome, BuildStage, ProgressEvent
from orchestrator.images.recipes import (
    LABEL_IMAGE,
    LABEL_PROTOCOL,
    LABEL_RECIPE_HASH,
    load_recipes,
    recipe_hash,
)
from orchestrator.protocol import PROTOCOL_VERSION

pytestmark = pytest.mark.docker

NAMES = ("base", "code-runner", "desktop")


def _builder() -> ImageBuilder:
    return ImageBuilder(DockerImageEngine(DockerEngine(call_timeout=120)), ImagesConfig())


@pytest.fixture(scope="module")
def built() -> list[BuildOutcome]:
    """Build (or confirm) all images once for this module."""

    async def build() -> list[BuildOutcome]:
        builder = _builder()
        try:
            return await builder.build()
        finally:
            await builder.aclose()

    return trio.run(build)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    handle = docker.from_env(timeout=300)
    yield handle
    handle.close()


def _run(client: docker.DockerClient, image: str, script: str) -> str:
    """Run ``sh -c script`` hardened like a sandbox (read-only root, no network)."""
    output = client.containers.run(
        image,
        entrypoint=["/bin/sh", "-c", script],
        remove=True,
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": "", "/home/sandbox": "uid=1000,gid=1000"},
        environment={"MPLCONFIGDIR": "/tmp/mpl"},
    )
    assert isinstance(output, bytes)
    return output.decode()


def test_build_reports_every_image(built: list[BuildOutcome]) -> None:
    assert [outcome.name for outcome in built] == list(NAMES)
    for outcome in built:
        assert outcome.image == f"sbx-{outcome.name}:latest"
        assert outcome.recipe_hash == recipe_hash(outcome.name)


@pytest.mark.parametrize("name", NAMES)
def test_image_has_contract_tags_labels_and_config(
    built: list[BuildOutcome], client: docker.DockerClient, name: str
) -> None:
    expected = recipe_hash(name)
    image = client.images.get(f"sbx-{name}:latest")
    assert f"sbx-{name}:{expected[:12]}" in image.tags
    config = image.attrs["Config"]
    assert config["Labels"][LABEL_IMAGE] == name
    assert config["Labels"][LABEL_RECIPE_HASH] == expected
    assert config["Labels"][LABEL_PROTOCOL] == str(PROTOCOL_VERSION)
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/workspace"
    assert config["Entrypoint"] == guest_command()
    assert not config.get("Cmd")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"] == STANDARD_PATH
    recipes = load_recipes()
    chain = [recipes[name]]
    while chain[0].parent:
        chain.insert(0, recipes[chain[0].parent])
    merged: dict[str, str] = {}
    for recipe in chain:
        merged.update(recipe.env)
    for key, value in merged.items():
        assert env[key] == value


@pytest.mark.parametrize("name", ["code-runner", "desktop"])
def test_derived_image_layers_start_with_the_base_layers(
    built: list[BuildOutcome], client: docker.DockerClient, name: str
) -> None:
    base_layers = client.images.get("sbx-base:latest").attrs["RootFS"]["Layers"]
    layers = client.images.get(f"sbx-{name}:latest").attrs["RootFS"]["Layers"]
    assert len(base_layers) == 2
    assert layers[: len(base_layers)] == base_layers
    assert len(layers) == len(base_layers) + 1


async def test_unchanged_rebuild_is_a_fast_no_op(built: list[BuildOutcome]) -> None:
    events: list[ProgressEvent] = []
    builder = _builder()
    started = time.monotonic()
    try:
        outcomes = await builder.build(progress=events.append)
    finally:
        await builder.aclose()
    assert [o.name for o in outcomes] == list(NAMES)
    assert not any(o.built for o in outcomes)
    assert time.monotonic() - started < 30
    finals = {e.image: e.stage for e in events if e.stage.final}
    assert finals == dict.fromkeys(NAMES, BuildStage.UP_TO_DATE)


async def test_status_reports_current_images(built: list[BuildOutcome]) -> None:
    builder = _builder()
    try:
        rows = await builder.status()
    finally:
        await builder.aclose()
    assert [row.name for row in rows] == list(NAMES)
    for row in rows:
        assert row.present
        assert row.current
        assert row.image_hash == row.expected_hash == recipe_hash(row.name)
        assert row.size and row.size > 50_000_000
        assert row.created is not None
        assert row.image_id and row.image_id.startswith("sha256:")


def test_base_rootfs_has_the_sandbox_user_and_mount_points(
    built: list[BuildOutcome], client: docker.DockerClient
) -> None:
    out = _run(
        client,
        "sbx-base:latest",
        "id -u; id -g; getent passwd sandbox; stat -c '%u:%g %a' /workspace; "
        "stat -c '%a' /tmp/.X11-unix 2>/dev/null || echo tmpfs; "
        "ls /var/lib/apt/lists | grep -c _Packages; "
        "ls /usr/share/doc/bash; ls /usr/share/man 2>/dev/null | wc -l",
    ).split("\n")
    assert out[0:2] == ["1000", "1000"]
    assert out[2] == "sandbox:x:1000:1000::/home/sandbox:/bin/bash"
    assert out[3] == "1000:1000 755"
    assert out[5] == "0"  # apt lists cleaned
    assert out[6] == "copyright"  # docs dropped, copyright kept
    assert out[7] == "0"  # no man pages


def test_x11_socket_dir_is_sticky_and_world_writable(
    built: list[BuildOutcome], client: docker.DockerClient
) -> None:
    output = client.containers.run(
        "sbx-base:latest",
        entrypoint=["stat", "-c", "%a %u", "/tmp/.X11-unix"],
        remove=True,
        network_mode="none",
    )
    assert output.decode().strip() == "1777 0"


def test_no_image_carries_the_guest_but_its_mount_point(
    built: list[BuildOutcome], client: docker.DockerClient
) -> None:
    listing = _run(client, "sbx-base:latest", "find /opt/sbx -printf '%U:%G %m %p\\n'")
    assert listing.splitlines() == ["0:0 755 /opt/sbx", "0:0 644 /opt/sbx/README"]


def test_code_runner_has_the_scientific_python_stack(
    built: list[BuildOutcome], client: docker.DockerClient
) -> None:
    out = _run(
        client,
        "sbx-code-runner:latest",
        "python3 -c 'import numpy, pandas, matplotlib; print(\"ok\")' && "
        "git --version >/dev/null && gcc --version >/dev/null && echo tools",
    )
    assert out.split() == ["ok", "tools"]


def test_desktop_has_the_x_tools(built: list[BuildOutcome], client: docker.DockerClient) -> None:
    out = _run(
        client,
        "sbx-desktop:latest",
        "Xvfb -help >/dev/null 2>&1 && echo xvfb; "
        "mkdir -p /tmp/.X11-unix; Xvfb :7 -screen 0 640x480x24 >/dev/null 2>&1 & "
        "sleep 1; DISPLAY=:7 xdotool version; "
        "firefox-esr --version 2>/dev/null",
    )
    assert "xvfb" in out
    assert "xdotool version" in out
    assert "Firefox" in out
