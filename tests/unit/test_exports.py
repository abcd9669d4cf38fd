"""The public surface is what ``orchestrator/__init__.py`` re-exports, nothing more."""

from __future__ import annotations

import orchestrator


def test_all_names_exist_and_are_sorted() -> None:
    for name in orchestrator.__all__:
        assert hasattr(orchestrator, name), name
    assert list(orchestrator.__all__) == sorted(orchestrator.__all__)


def test_the_documented_api_is_exported() -> None:
    for name in ("Orchestrator", "Session", "ExecResult", "Config", "load_config", "SbxError"):
        assert name in orchestrator.__all__


def test_no_private_names_leak() -> None:
    import inspect

    public = {
        name
        for name, value in vars(orchestrator).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(orchestrator.__all__) - {"__version__"}
