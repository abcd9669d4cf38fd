"""The package declares what it imports, and ships its typing marker and licence."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """The dependencies, and those of the optional extras (a module that imports an extra's
    package is one only that extra loads, e.g. the inspect_ai sandbox)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [
        spec
        for name, specs in project.get("optional-dependencies", {}).items()
        if name != "dev"
        for spec in specs
    ]
    return {
        _normalize(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0])
        for spec in [*project["dependencies"], *extras]
    }


def _third_party_imports() -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "_assets" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top != "orchestrator" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.relative_to(ROOT))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = _declared()
    distributions = packages_distributions()
    missing = {
        module: sorted(str(p) for p in paths)
        for module, paths in _third_party_imports().items()
        if not {_normalize(d) for d in distributions.get(module, [module])} & declared
    }
    assert missing == {}, f"imported but not in [project].dependencies: {missing}"


def test_the_package_ships_py_typed_and_a_licence() -> None:
    assert (PACKAGE / "py.typed").is_file()
    licence = (ROOT / "LICENSE").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    assert "Apache License" in licence and "Version 2.0" in licence
