"""What every sandbox image holds and is configured with, whichever way it is built.

The image config (user, working directory, the guest's start as
entrypoint, env, labels), the mount point ``/opt/sbx`` where every sandbox
gets the guest bundle (``guest_bundle``: the guest is not part of any image,
so changing it rebuilds no image), the dpkg/apt settings that keep a rootfs
small, and the name of a recipe's rootfs hook.  Both build paths
(mmdebstrap and ``--base IMAGE`` build containers) take these from here, so
the two kinds of image keep the same contract.

Must not: talk to the engine, run processes or write files; it only
describes.  (``recipe_chain`` reads recipe files.)
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.images.build_run import BuildTarget
from orchestrator.images.engine import ImageSettings
from orchestrator.images.guest_bundle import BUNDLE_DIR, guest_command
from orchestrator.images.recipes import (
    LABEL_IMAGE,
    LABEL_PROTOCOL,
    LABEL_RECIPE_HASH,
    ImageRecipe,
    load_recipe,
)
from orchestrator.protocol import PROTOCOL_VERSION

__all__ = [
    "APT_OPTIONS",
    "CUSTOMIZE_SCRIPT",
    "DPKG_EXCLUDES",
    "SANDBOX_USER",
    "SANDBOX_WORKDIR",
    "STANDARD_PATH",
    "image_settings",
    "recipe_chain",
    "sbx_tree",
]

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_USER = "1000:1000"
SANDBOX_WORKDIR = "/workspace"
CUSTOMIZE_SCRIPT = "customize.sh"
"""A recipe directory's rootfs hook (``sh customize.sh ROOT``), run for it and its children."""

DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
APT_OPTIONS = ('APT::Install-Recommends "false"', 'Acquire::Languages "none"')


def recipe_chain(recipe: ImageRecipe) -> list[ImageRecipe]:
    """The recipe and its ancestors, root first."""
    chain = [recipe]
    while chain[0].parent:
        chain.insert(0, load_recipe(chain[0].parent))
    return chain


def _env(chain: Sequence[ImageRecipe]) -> list[str]:
    values = {"PATH": STANDARD_PATH}
    for recipe in chain:
        values.update(recipe.env)
    return [f"{key}={value}" for key, value in values.items()]


def _labels(target: BuildTarget) -> dict[str, str]:
    return {
        LABEL_IMAGE: target.name,
        LABEL_RECIPE_HASH: target.expected,
        LABEL_PROTOCOL: str(PROTOCOL_VERSION),
    }


def image_settings(target: BuildTarget, chain: Sequence[ImageRecipe]) -> ImageSettings:
    """The config of ``target``'s image; ``chain`` is its recipe and its ancestors, root first."""
    return ImageSettings(
        user=SANDBOX_USER,
        working_dir=SANDBOX_WORKDIR,
        entrypoint=guest_command(),
        env=_env(chain),
        labels=_labels(target),
    )


_MOUNT_NOTE = b"""The guest bundle (the guest's code and the Python it runs on) is mounted here,
read-only, in every sandbox sbx starts; see orchestrator/images/guest_bundle.py.
"""


def sbx_tree() -> dict[str, bytes]:
    """sbx's own layer of every image: the mount point of the guest bundle, and nothing that
    changes with the guest."""
    return {f"{BUNDLE_DIR}/README": _MOUNT_NOTE}
