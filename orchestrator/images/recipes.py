"""Image recipes: what goes into each sandbox image, and its content hash.

A recipe is ``sandbox-images/<name>/recipe.yaml``.  Its hash covers the
package list, the recipe's own settings, its parent's hash and the guest's
code, so an image whose label carries the current hash is up to date and a
rebuild is a no-op; ``builder.ImageBuilder`` builds the images from them.

Must not: talk to an engine or depend on how images are built.  Anything
added to the hash rebuilds every image that has it, so change it only when
what goes into an image changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import ConfigError
from orchestrator.images.assets import (
    IMAGE_FORMAT,
    assets_dir,
    resolve_image_name,
    short_name,
)

__all__ = [
    "LABEL_IMAGE",
    "LABEL_PROTOCOL",
    "LABEL_RECIPE_HASH",
    "ImageRecipe",
    "load_recipe",
    "load_recipes",
    "recipe_hash",
    "resolve_image_name",
    "short_name",
]

LABEL_IMAGE = "io.sbx.image"
LABEL_RECIPE_HASH = "io.sbx.recipe-hash"
LABEL_PROTOCOL = "io.sbx.protocol"


class ImageRecipe(BaseModel):
    """One ``recipe.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short name: base, code-runner, desktop.")
    description: str = ""
    parent: str | None = Field(default=None, description="Short name of the image it builds on.")
    packages: tuple[str, ...] = Field(default=(), description="Debian packages to install.")
    env: dict[str, str] = Field(default_factory=dict)
    directory: Path = Field(exclude=True)


def load_recipe(name: str) -> ImageRecipe:
    """The recipe of the image called ``name`` (short or full name)."""
    short = short_name(name)
    path = assets_dir() / short / "recipe.yaml"
    if not path.is_file():
        known = ", ".join(sorted(load_recipes()))
        raise ConfigError(f"no image recipe called {short!r}; the known images are: {known}")
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ImageRecipe.model_validate({**data, "directory": path.parent})
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ConfigError(f"image recipe {path} is invalid: {exc}") from None


def load_recipes() -> dict[str, ImageRecipe]:
    """Every recipe shipped with this installation, by short name."""
    recipes: dict[str, ImageRecipe] = {}
    for path in sorted(assets_dir().glob("*/recipe.yaml")):
        recipe = load_recipe(path.parent.name)
        recipes[recipe.name] = recipe
    return recipes


def recipe_hash(name: str, *, base_image: str | None = None) -> str:
    """Content hash of an image's recipe, its ancestors' and the guest's code.

    ``base_image`` (a user-supplied starting image) is part of the hash, so
    switching it rebuilds everything above it.
    """
    recipe = load_recipe(name)
    digest = hashlib.sha256()
    spec = recipe.model_dump(mode="json")
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for extra in sorted(recipe.directory.iterdir()):
        if extra.is_file() and extra.name != "recipe.yaml":
            digest.update(extra.name.encode() + b"\0" + extra.read_bytes())
    if recipe.parent:
        digest.update(recipe_hash(recipe.parent, base_image=base_image).encode())
    else:
        digest.update(f"format {IMAGE_FORMAT}".encode())
        digest.update((base_image or "mmdebstrap").encode())
    return digest.hexdigest()
