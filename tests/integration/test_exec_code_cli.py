"""`sbx exec-code`: one file of code in a fresh sandbox, with its figures and files saved here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import IMAGE

SBX = [sys.executable, "-m", "orchestrator.cli"]

SCRIPT = """\
import matplotlib.pyplot as plt
import os
print("computing")
plt.plot([0, 1], [1, 0])
os.makedirs("/workspace/outputs/tables", exist_ok=True)
with open("/workspace/outputs/tables/result.csv", "w") as f:
    f.write("x,y\\n1,2\\n")
with open("/workspace/input.txt") as f:
    words = f.read().split()
len(words) * 10
"""


def sbx(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*SBX, *args], input=stdin, capture_output=True, timeout=timeout, check=False, cwd=cwd
    )


def test_exec_code_prints_output_and_value_and_saves_figures_and_files(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    data = tmp_path / "input.txt"
    data.write_text("three little words")
    out = tmp_path / "out"
    r = sbx("exec-code", "--image", IMAGE, "--put", str(data), "--out", str(out), str(script))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"computing\n30\n"
    assert b"saved 2 file(s)" in r.stderr
    assert (out / "figure-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "tables" / "result.csv").read_text() == "x,y\n1,2\n"


def test_exec_code_reads_stdin_and_exits_with_the_codes_status(tmp_path: Path) -> None:
    r = sbx(
        "exec-code",
        "--image",
        IMAGE,
        "-",
        stdin=b"import sys\nprint('hi')\nsys.exit(4)",
        cwd=tmp_path,
    )
    assert r.returncode == 4
    assert r.stdout == b"hi\n"
    failed = sbx("exec-code", "--image", IMAGE, "-", stdin=b"1/0", cwd=tmp_path)
    assert failed.returncode == 1
    assert b"ZeroDivisionError: division by zero" in failed.stderr
    assert not list(tmp_path.iterdir())  # nothing to save, no folder made


def test_exec_code_times_out_with_124(tmp_path: Path) -> None:
    r = sbx("exec-code", "--image", IMAGE, "--timeout", "1", "-", stdin=b"while True: pass")
    assert r.returncode == 124
    assert b"timeout" in r.stderr


def test_exec_code_json_summary(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("echo from bash; echo data > /workspace/outputs/d.txt\n")
    r = sbx("exec-code", "--image", IMAGE, "--json", "--out", str(tmp_path / "o"), str(script))
    summary = json.loads(r.stdout)
    assert r.returncode == 0
    assert summary["status"] == "ok"
    assert summary["stdout"] == "from bash\n"
    assert summary["files"] == [{"path": "/workspace/outputs/d.txt", "size": 5}]
    assert (tmp_path / "o" / "d.txt").read_text() == "data\n"


def test_exec_code_with_a_missing_image_exits_125(tmp_path: Path) -> None:
    r = sbx("exec-code", "--image", "sbx-nonexistent", "-", stdin=b"print(1)", cwd=tmp_path)
    assert r.returncode == 125
    assert b"image sbx-nonexistent not found" in r.stderr
