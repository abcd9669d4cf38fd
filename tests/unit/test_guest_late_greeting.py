"""A guest started before anyone listens (a Swarm task): it greets late, exits on silence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrator import protocol
from orchestrator.images.assets import guest_files


def _guest(tmp_path: Path, **env: str) -> subprocess.Popen[bytes]:
    for name, data in guest_files().items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return subprocess.Popen(
        [sys.executable, "-I", str(tmp_path / "main.py"), "--no-isolation"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )


def _host_hello() -> bytes:
    return protocol.encode(
        {"k": protocol.HELLO, "v": protocol.PROTOCOL_VERSION, "caps": [], "config": {}}
    )


def test_a_late_guest_answers_the_hosts_hello_and_nothing_before(tmp_path: Path) -> None:
    guest = _guest(tmp_path, SBX_GUEST_GREET="late")
    try:
        assert guest.stdin is not None and guest.stdout is not None
        guest.stdin.write(_host_hello())
        guest.stdin.close()  # then stdin ends: the guest exits, after answering
        out = guest.stdout.read()
        assert guest.wait(timeout=30) == 0
    finally:
        guest.kill()
    [(header, _)] = protocol.FrameDecoder().feed(out)
    assert header["k"] == protocol.HELLO
    assert header["guest"]["pid"] == guest.pid


def test_a_guest_that_hears_nothing_exits_on_its_own(tmp_path: Path) -> None:
    guest = _guest(tmp_path, SBX_GUEST_GREET="late", SBX_GUEST_SILENCE="0.5")
    try:
        assert guest.stdin is not None and guest.stderr is not None
        guest.stdin.write(_host_hello())
        guest.stdin.flush()  # stdin stays open: only silence can end it
        assert guest.wait(timeout=30) == 0
        assert b"the host went silent" in guest.stderr.read()
    finally:
        guest.kill()
