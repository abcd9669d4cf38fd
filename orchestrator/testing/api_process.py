"""Run ``sbx serve`` as a child process, for tests and benchmarks that need it apart.

Its log goes to a file (a pipe that nobody drains would block the server once
full); the URL is read from the ``serving the HTTP API`` log line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ApiProcess", "start_api_process"]


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        """Resident memory of the server process, bytes."""
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (a graceful shutdown), then the exit code; the log file is removed."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        finally:
            self.log_path.unlink(missing_ok=True)


def start_api_process(
    env: dict[str, str] | None = None,
    *,
    bind: str = "127.0.0.1:0",
    timeout: float = 60,
    serve_args: tuple[str, ...] = (),
) -> ApiProcess:
    """``sbx serve --bind BIND [serve_args...]`` started, once it says where it listens."""
    handle, name = tempfile.mkstemp(prefix="sbx-serve-", suffix=".log")
    log_path = Path(name)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "--log-format",
            "json",
            "--log-level",
            "info",
            "serve",
            "--bind",
            bind,
            *serve_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=handle,
        env={**os.environ, **(env or {})},
    )
    os.close(handle)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"serving the HTTP API"' in line:
                return ApiProcess(json.loads(line)["url"], process, log_path)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    output = log_path.read_text(errors="replace")[-2000:]
    process.kill()
    process.wait()
    log_path.unlink(missing_ok=True)
    raise RuntimeError(f"sbx serve did not start (exit {process.returncode}): {output}")
