"""An in-memory backend for unit tests: no engine, the real guest as a local process.

Sandboxes are records in a dict.  Starting one runs the real guest code as a
child process of the test (``python3 -I main.py`` from a temporary copy), so
unit tests exercise the real protocol, channel, sessions and supervisor in
milliseconds.  It is *not* a sandbox: the guest runs with the test's own
privileges, so it is for tests only.  Auto-remove is emulated: a sandbox
whose guest has exited is gone.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from orchestrator.backends.base import (
    EventSink,
    ImageDefaults,
    SandboxEvent,
    SandboxInfo,
    SandboxSpec,
    StderrSink,
)
from orchestrator.errors import EngineError, ImageNotFound, SandboxStartError
from orchestrator.images.assets import guest_files

__all__ = ["FakeBackend"]


@dataclass
class _FakeSandbox:
    info: SandboxInfo
    spec: SandboxSpec
    process: trio.Process | None = None
    stream: _PipeStream | None = None
    removed: bool = False
    events: list[str] = field(default_factory=list)


class _PipeStream(trio.abc.Stream):
    """The guest's stdin/stdout, connected when the sandbox starts."""

    def __init__(self) -> None:
        self._connected = trio.Event()
        self._stdin: trio.abc.SendStream | None = None
        self._stdout: trio.abc.ReceiveStream | None = None
        self._closed = False

    def connect(self, stdin: trio.abc.SendStream, stdout: trio.abc.ReceiveStream) -> None:
        self._stdin, self._stdout = stdin, stdout
        self._connected.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._connected.wait()
        if self._closed or self._stdin is None:
            raise trio.ClosedResourceError("stream closed")
        await self._stdin.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._connected.wait()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self._connected.wait()
        if self._closed or self._stdout is None:
            raise trio.ClosedResourceError("stream closed")
        return bytes(await self._stdout.receive_some(max_bytes))

    async def aclose(self) -> None:
        self._closed = True
        if self._stdin is not None:
            await self._stdin.aclose()
        if self._stdout is not None:
            await self._stdout.aclose()


class FakeBackend:
    """Sandboxes as dict entries; guests as local processes. For tests only."""

    name = "fake"

    def __init__(self, images: tuple[str, ...] = ("sbx-code-runner", "sbx-desktop", "sbx-base")):
        self.images = set(images)
        self.sandboxes: dict[str, _FakeSandbox] = {}
        self.fail_next_start: str | None = None
        self._ids = itertools.count(1)
        self._guest_dir: Path | None = None
        self._watchers: list[EventSink] = []
        self.defaults: dict[str, ImageDefaults] = {}
        self.root_bytes: dict[str, int] = {}
        """Per sandbox, what its writable root holds (tests set it)."""
        """Per image, what its WORKDIR and USER would say (tests set them)."""

    def _guest_main(self) -> Path:
        if self._guest_dir is None:
            self._guest_dir = Path(tempfile.mkdtemp(prefix="sbx-fake-guest-"))
            for name, data in guest_files().items():
                target = self._guest_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return self._guest_dir / "main.py"

    def _get(self, sandbox_id: str) -> _FakeSandbox:
        box = self.sandboxes.get(sandbox_id)
        if box is None or self._gone(box):
            raise EngineError(f"no sandbox {sandbox_id} (it was removed)")
        return box

    def _gone(self, box: _FakeSandbox) -> bool:
        if box.removed:
            return True
        if box.process is not None and box.process.returncode is not None:
            box.removed = True  # auto-remove on exit
            return True
        return False

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        if spec.image not in self.images:
            raise ImageNotFound(spec.image)
        sandbox_id = f"fake{next(self._ids):06d}"
        info = SandboxInfo(
            id=sandbox_id,
            name=spec.name,
            image=spec.image,
            status="created",
            labels=dict(spec.labels),
            details={"user": spec.user, "network": spec.network, "memory": spec.memory},
        )
        self.sandboxes[sandbox_id] = _FakeSandbox(info=info, spec=spec, events=["create"])
        return info

    async def attach(self, sandbox_id: str, on_stderr: StderrSink) -> trio.abc.Stream:
        box = self._get(sandbox_id)
        box.stream = _PipeStream()
        box.events.append("attach")
        return box.stream

    async def start(self, sandbox_id: str) -> None:
        box = self._get(sandbox_id)
        if self.fail_next_start is not None:
            message, self.fail_next_start = self.fail_next_start, None
            box.removed = True
            raise SandboxStartError(message)
        env = {**dict(box.spec.env)}
        env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        env.setdefault("HOME", os.environ.get("HOME", "/tmp"))
        if box.spec.mounts:
            # No mount namespace here: tell the guest where each mount's directory really is.
            env["SBX_PATH_MAP"] = json.dumps({m.target: m.source for m in box.spec.mounts})
        box.process = await trio.lowlevel.open_process(
            # The test's own user runs everything (no uid of the guest's, even as root).
            [sys.executable, "-I", "-S", str(self._guest_main()), "--no-isolation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
            cwd=box.spec.workdir if await trio.Path(box.spec.workdir).is_dir() else None,
        )
        assert box.process.stdin is not None
        assert box.process.stdout is not None
        if box.stream is not None:
            box.stream.connect(box.process.stdin, box.process.stdout)
        box.info = replace(box.info, status="running")
        box.events.append("start")

    async def _kill(self, box: _FakeSandbox, *, grace: float) -> None:
        process = box.process
        if process is None or process.returncode is not None:
            return
        if box.stream is not None:
            with trio.CancelScope(shield=True):
                await box.stream.aclose()
        with trio.move_on_after(grace) as scope:
            scope.shield = True
            await process.wait()
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()

    async def stop(self, sandbox_id: str, timeout: float = 5.0) -> None:
        box = self.sandboxes.get(sandbox_id)
        if box is None:
            return
        await self._kill(box, grace=timeout)
        box.removed = True
        box.events.append("stop")

    async def remove(self, sandbox_id: str) -> None:
        box = self.sandboxes.get(sandbox_id)
        if box is None:
            return
        await self._kill(box, grace=0.5)
        box.removed = True
        box.events.append("remove")

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        return self._get(sandbox_id).info

    async def list(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        return [
            box.info
            for box in self.sandboxes.values()
            if not self._gone(box)
            and all(box.info.labels.get(key) == value for key, value in labels.items())
        ]

    async def image_exists(self, image: str) -> bool:
        return image in self.images

    async def root_usage(self, sandbox_id: str) -> int | None:
        return self.root_bytes.get(sandbox_id)

    async def image_defaults(self, image: str) -> ImageDefaults:
        if image not in self.images:
            raise ImageNotFound(image)
        return self.defaults.get(image, ImageDefaults())

    async def watch(
        self,
        labels: Mapping[str, str],
        on_event: EventSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._watchers.append(on_event)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._watchers.remove(on_event)

    def emit(self, event: SandboxEvent) -> None:
        """Tell the watchers what "the engine" saw (tests inject engine events this way)."""
        for watcher in list(self._watchers):
            watcher(event)

    async def describe_engine(self) -> dict[str, Any]:
        return {
            "version": "fake",
            "api_version": "-",
            "storage_driver": "memory",
            "runtimes": ["fake"],
        }

    def add_orphan(self, labels: Mapping[str, str]) -> str:
        """A sandbox left behind by some other (dead) supervisor, for reaper tests."""
        sandbox_id = f"orphan{next(self._ids):06d}"
        info = SandboxInfo(
            id=sandbox_id,
            name=sandbox_id,
            image="sbx-code-runner",
            status="running",
            labels=dict(labels),
        )
        spec = SandboxSpec(
            image="sbx-code-runner",
            name=sandbox_id,
            labels=dict(labels),
            env={},
            memory=0,
            cpus=1,
            pids_limit=1,
            network=False,
            tmpfs={},
            user="1000",
            workdir="/",
        )
        self.sandboxes[sandbox_id] = _FakeSandbox(info=info, spec=spec)
        return sandbox_id

    async def aclose(self) -> None:
        for box in self.sandboxes.values():
            await self._kill(box, grace=0.5)
        if self._guest_dir is not None:
            shutil.rmtree(self._guest_dir, ignore_errors=True)
            self._guest_dir = None
