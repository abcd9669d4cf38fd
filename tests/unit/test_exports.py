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

    for name in orchestrator.__all__:  # the re-exports load on first use
        getattr(orchestrator, name)
    public = {
        name
        for name, value in vars(orchestrator).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(orchestrator.__all__) - {"__version__"}


def test_unknown_names_are_attribute_errors() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Orchestra'"):
        _ = orchestrator.Orchestra  # type: ignore[attr-defined]


def test_the_cli_does_not_import_what_a_one_shot_run_never_uses() -> None:
    """FastAPI, the desktop and the interpreter load only when used: a quarter of a
    second of every ``sbx run`` otherwise."""
    import subprocess
    import sys

    probe = (
        "import sys, orchestrator.cli; "
        "print(sorted(m for m in ('fastapi', 'orchestrator.desktop', 'orchestrator.api') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
