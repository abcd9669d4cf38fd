"""The code's shape, kept: no import cycles, small modules, one protocol shared with the guest.

The layer order itself is an import-linter contract (``pyproject.toml``,
``make check`` runs ``lint-imports``); these tests keep what a contract on
layers cannot see.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from orchestrator import errors, protocol

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"
GUEST = ROOT / "sandbox-images" / "guest"
MAX_LINES = 450


def _modules(package: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every module of ours ``module`` imports: at the top, inside functions, under
    TYPE_CHECKING alike (a cycle through a lazy import is still a cycle of concerns)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in known:
                    yield full
                elif source in known:
                    yield source


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in graph:
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_import_cycles_in_the_package() -> None:
    known = _modules(PACKAGE)
    graph = {
        name: {target for target in _imported(name, path, known) if target != name}
        for name, path in known.items()
    }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n"
    )
    (package / "c.py").write_text("def f():\n    from pkg.a import x\n")
    known = _modules(package)
    graph = {name: set(_imported(name, path, known)) - {name} for name, path in known.items()}
    assert _cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_module_is_over_the_size_limit() -> None:
    over = {
        str(path.relative_to(ROOT)): lines
        for folder in (PACKAGE, GUEST)
        for path in folder.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert over == {}, f"modules over {MAX_LINES} lines (split them along their concerns)"


def test_the_protocol_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(protocol.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the guest carries protocol.py alone: no relative imports"
            names.add((node.module or "").split(".")[0])
    assert names <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)


def test_every_error_class_of_the_guest_names_a_code_of_the_protocol_table() -> None:
    # The library's classes only (the API client derives its own from them).
    classes = [c for c in _subclasses(errors.GuestError) if c.__module__ == errors.__name__]
    codes = {cls.code for cls in classes}
    assert codes <= set(protocol.ERROR_CODES), codes - set(protocol.ERROR_CODES)
    # Every code the table names turns into a GuestError that carries the code.
    for code in protocol.ERROR_CODES:
        err = errors.guest_error_from_wire(code, "message", None)
        assert isinstance(err, errors.GuestError)
        assert err.code == code or err.details.get("code") == code


def test_every_protocol_error_code_is_a_named_constant() -> None:
    constants = {
        value
        for name, value in vars(protocol).items()
        if name.startswith("E_") and isinstance(value, str)
    }
    assert constants == set(protocol.ERROR_CODES)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
