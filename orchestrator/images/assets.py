"""Where the image recipes and the guest's code live, installed or in a checkout.

A wheel carries ``sandbox-images/`` as ``orchestrator/_assets/sandbox-images``;
a source checkout (editable install) has it next to the package.  The guest
always ships with a copy of ``orchestrator/protocol.py``, so both ends of the
channel are built from the same file.

Must not: write anything or talk to an engine; it finds and reads files.
The guest is not part of any image (every sandbox mounts the guest bundle,
``guest_bundle``), so changing it rebuilds no image.
"""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath

from orchestrator.errors import ConfigError

__all__ = [
    "GUEST_DIR_IN_IMAGE",
    "IMAGE_FORMAT",
    "assets_dir",
    "guest_bytecode",
    "guest_files",
    "known_image_names",
    "resolve_image_name",
    "short_name",
]

GUEST_DIR_IN_IMAGE = PurePosixPath("/opt/sbx/guest")
"""Where the guest's files sit inside every sandbox (in the mounted guest bundle)."""

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def known_image_names() -> list[str]:
    """The short names of the images sbx builds (``sandbox-images/*/recipe.yaml``)."""
    try:
        root = assets_dir()
    except ConfigError:
        return []
    return sorted(path.parent.name for path in root.glob("*/recipe.yaml"))


@functools.cache
def assets_dir() -> Path:
    """The ``sandbox-images`` directory of this installation."""
    for candidate in (
        _PACKAGE_DIR / "_assets" / "sandbox-images",
        _PACKAGE_DIR.parent / "sandbox-images",
    ):
        if (candidate / "guest" / "main.py").is_file():
            return candidate
    raise ConfigError(
        "cannot find the sandbox-images directory (image recipes and the guest) next to "
        f"{_PACKAGE_DIR}; reinstall the package (`make install`)"
    )


def guest_files() -> dict[str, bytes]:
    """The guest's files, keyed by their path relative to ``GUEST_DIR_IN_IMAGE``.

    ``sbx_guest/protocol.py`` is this orchestrator's own protocol module.
    """
    root = assets_dir() / "guest"
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    files["sbx_guest/protocol.py"] = (_PACKAGE_DIR / "protocol.py").read_bytes()
    return files


def guest_bytecode(files: dict[str, bytes]) -> dict[str, bytes]:
    """Compiled ``__pycache__`` entries for the guest's modules, for this interpreter.

    A sandbox starts a fresh guest every time, on a read-only root where it
    cannot cache bytecode itself, so shipping it saves compiling ~1,500 lines
    at every start.  The files are unchecked-hash pycs (PEP 552): valid without
    matching mtimes, and simply ignored by an image whose Python is another
    version (the file name carries the version tag).
    """
    import importlib.util

    compiled: dict[str, bytes] = {}
    for name, source in files.items():
        if not name.endswith(".py") or name == "main.py":
            continue
        code = compile(source, f"{GUEST_DIR_IN_IMAGE}/{name}", "exec", dont_inherit=True)
        source_hash = importlib.util.source_hash(source)
        data = importlib._bootstrap_external._code_to_hash_pyc(  # type: ignore[attr-defined]
            code, source_hash, checked=False
        )
        folder, _, module = name.rpartition("/")
        cache_name = importlib.util.cache_from_source(module)
        compiled[f"{folder}/{cache_name}" if folder else cache_name] = bytes(data)
    return compiled


IMAGE_FORMAT = 3
"""Bumped when what an image carries besides its recipe changes (format 3: no guest inside;
every sandbox mounts the guest bundle)."""


def short_name(name: str, *, prefix: str = "sbx-") -> str:
    """``sbx-code-runner:latest`` → ``code-runner``; other names are returned untouched."""
    bare = name.split(":", 1)[0]
    return bare[len(prefix) :] if bare.startswith(prefix) else bare


def resolve_image_name(name: str, *, prefix: str = "sbx-") -> str:
    """``code-runner`` → ``sbx-code-runner``; a name with a registry, tag or our prefix is kept.

    Here, not beside the recipes, so that starting a sandbox does not load the recipe
    machinery (YAML, their models).

    Short names are the directory names under ``sandbox-images/``; anything
    else is taken as a full image reference the user built themselves.
    """
    if not name:
        raise ConfigError("an image name cannot be empty; use e.g. 'code-runner' or 'desktop'")
    if name.startswith(prefix) or "/" in name or ":" in name:
        return name
    if (assets_dir() / name / "recipe.yaml").is_file():
        return f"{prefix}{name}"
    return name
