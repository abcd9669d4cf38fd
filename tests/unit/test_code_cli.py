"""`sbx exec-code`'s arguments and their errors (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import build_parser, main


def test_exec_code_arguments() -> None:
    args = build_parser().parse_args(
        [
            "exec-code",
            "--timeout",
            "5",
            "--put",
            "a.csv:/tmp/a.csv",
            "-o",
            "out",
            "--memory",
            "2g",
            "job.py",
        ]
    )
    assert args.file == "job.py"
    assert args.timeout == 5
    assert args.put == ["a.csv:/tmp/a.csv"]
    assert args.out == "out"
    assert args.memory == 2 << 30


def test_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["exec-code", str(tmp_path / "nope.py")])
    assert info.value.code == 125
    assert "cannot read" in capsys.readouterr().err


def test_a_missing_input_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "job.py"
    script.write_text("1")
    with pytest.raises(SystemExit) as info:
        main(["exec-code", "--put", str(tmp_path / "absent.csv"), str(script)])
    assert info.value.code == 125
    assert "is not a file" in capsys.readouterr().err
