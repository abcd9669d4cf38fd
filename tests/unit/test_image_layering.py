"""Building images stays engine-neutral: ``orchestrator.images`` reaches an engine only
through ``ImageEngine``, never through docker-py or a backend."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator.images

IMAGES_DIR = Path(orchestrator.images.__file__).parent
FORBIDDEN = ("docker", "requests", "orchestrator.backends")


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_images_layer_imports_no_engine_client_and_no_backend() -> None:
    offending = {
        f"{path.name}: {module}"
        for path in sorted(IMAGES_DIR.rglob("*.py"))
        for module in _imported_modules(path)
        if any(module == name or module.startswith(name + ".") for name in FORBIDDEN)
    }
    assert offending == set()
