"""The memory store's own guest: the memory tool's edits run on the host, beside the store.

The store is a directory on the supervisor's host per namespace
(``orchestrator.memory_store``).  It used to be mounted into the sandbox at
``/memories``; but whatever a sandbox can mount, its code can write, past the
store's cap (``memory.max_bytes`` held only the memory tool), onto the
host's disk -- and a session run as root has ``CAP_DAC_OVERRIDE``, so no
permission keeps it out.  So the store is never mounted: the memory tool's
commands go to a guest of our own, started on the host the first time a
session uses the tool, told where ``/memories`` really is (``SBX_PATH_MAP``).
It is the same standard-library guest the sandboxes run, loaded from the
package's assets, so the store's confinement (neither ``..`` nor a symbolic
link leads out), its size cap and the ``flock`` that makes sessions sharing a
namespace take turns are the guest's own, unchanged.

Must not: be asked anything but the memory tool's edits (nothing the model
sends reaches a command line); outlive its session (the session closes it,
and its stdin closing ends it in any case, as a sandbox's guest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import structlog
import trio

from orchestrator.channel import GuestChannel
from orchestrator.config import Config
from orchestrator.errors import SessionClosed, SessionError
from orchestrator.guest_client.client import CallLimits, GuestClient
from orchestrator.images.assets import assets_dir
from orchestrator.memory_store import MEMORY_MOUNT, prepare_namespace
from orchestrator.observe import Observer

__all__ = ["MemoryGuest"]


class _HasObserver(Protocol):
    observer: Observer


log = structlog.get_logger("orchestrator.memory")

_START_TIMEOUT = 30.0
_CLOSE_GRACE = 2.0

# Loads the guest package from the assets (and this package's protocol module as its
# ``protocol``, as an image's copy is) without writing a file, then runs its server.
_BOOTSTRAP = """
import importlib.util, sys
package, protocol = sys.argv[1], sys.argv[2]
def load(name, path, search=None):
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
load("sbx_guest", package + "/__init__.py", [package])
sys.modules["sbx_guest"].protocol = load("sbx_guest.protocol", protocol)
from sbx_guest.server import main
sys.exit(main(sys.argv[3:]))
"""


def guest_argv() -> list[str]:
    """How to run the guest on the host: this interpreter, isolated, writing no bytecode."""
    package = assets_dir() / "guest" / "sbx_guest"
    protocol = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol.py")
    return [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, str(package), protocol]


class MemoryGuest:
    """One session's memory store, served by a guest process on the host, started on first use."""

    def __init__(
        self,
        config: Config,
        namespace: str | None,
        owner: str | None,
        session_id: str,
        hooks: _HasObserver,
    ) -> None:
        self._config = config
        self._namespace = namespace
        """``None``: the session has no store (``memories=False``)."""
        self._owner = owner
        self._session_id = session_id
        self._observer = hooks.observer
        self._lock = trio.Lock()
        self._process: trio.Process | None = None
        self._channel: GuestChannel | None = None
        self._client: GuestClient | None = None
        self._closed = False

    async def prepare(self) -> Path | None:
        """Make the namespace's directory if needed (as its session opens); its path."""
        if self._namespace is None:
            return None
        return await trio.to_thread.run_sync(
            prepare_namespace, self._config, self._namespace, self._owner
        )

    async def client(self, nursery: trio.Nursery | None) -> GuestClient:
        """The guest's client; the guest is (re)started in ``nursery`` when it is not running
        (``None``: the session is not running)."""
        if self._namespace is None:
            raise SessionError(
                f"session {self._session_id} has no memory store: it was opened with "
                "memories=False (or memory.enabled is off)"
            )
        async with self._lock:
            if self._closed or nursery is None:
                raise SessionClosed(
                    f"session {self._session_id} is not running; open a new session"
                )
            if self._client is None or self._channel is None or self._channel.closed:
                await self._stop()
                await self._start(nursery)
            assert self._client is not None
            return self._client

    async def _start(self, nursery: trio.Nursery) -> None:
        path = await self.prepare()
        assert path is not None
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SBX_PATH_MAP": json.dumps({MEMORY_MOUNT: str(path)}),
        }
        process = await trio.lowlevel.open_process(
            [*guest_argv(), "--no-isolation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd="/",
        )
        self._process = process
        assert process.stdin is not None
        assert process.stdout is not None
        label = f"memory store of session {self._session_id}"
        channel = GuestChannel(
            trio.StapledStream(process.stdin, process.stdout),
            name=label,
            session_id=self._session_id,
        )
        self._channel = channel
        await channel.start(nursery, config={"roots": []}, timeout=_START_TIMEOUT)
        settings = self._config.session
        limits = CallLimits(call_timeout=settings.call_timeout, kill_grace=settings.kill_grace)
        self._client = GuestClient(channel, label=label, limits=limits, observer=self._observer)
        log.debug("memory store guest started", namespace=self._namespace, pid=process.pid)

    async def aclose(self) -> None:
        """Stop the guest (shielded, bounded): its session is closing."""
        with trio.CancelScope(shield=True):
            async with self._lock:
                self._closed = True
                await self._stop()

    async def _stop(self) -> None:
        channel, self._channel, self._client = self._channel, None, None
        process, self._process = self._process, None
        if channel is not None:
            await channel.aclose()
        if process is None:
            return
        with trio.move_on_after(_CLOSE_GRACE):
            await process.wait()  # its stdin closed: it ends as a sandbox's guest does
        if process.returncode is None:
            process.kill()
            await process.wait()
