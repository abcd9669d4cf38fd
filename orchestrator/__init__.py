"""sbx: hardened Docker sandboxes for Claude's tools and plain exec/file calls.

The public surface is re-exported here; everything else is internal and may
change.  Start with ``Orchestrator``::

    async with Orchestrator() as orch:
        async with orch.session(image="code-runner") as s:
            print((await s.exec("echo hi")).stdout)
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from orchestrator.backends.base import BindMount, SandboxBackend, SandboxInfo, SandboxSpec
    from orchestrator.backends.fake import FakeBackend
    from orchestrator.client import Client
    from orchestrator.config import Config, explain_config, load_config
    from orchestrator.desktop import ActionResult, Desktop, Scaling, Screenshot
    from orchestrator.errors import (
        ConfigError,
        DesktopError,
        EngineError,
        EngineUnavailable,
        FileTooLarge,
        GuestError,
        ImageBuildError,
        ImageNotFound,
        OperationTimeout,
        OptionNotAllowed,
        PathNotAllowed,
        ProtocolError,
        SandboxGone,
        SandboxStartError,
        SbxError,
        SessionClosed,
        SessionError,
        SessionLimitReached,
        SessionNotFound,
        SnapshotError,
    )
    from orchestrator.guest_client.connection import SandboxConnection
    from orchestrator.guest_client.exec_stream import ExecStream
    from orchestrator.interpreter import CodeResult, OutputFile
    from orchestrator.log import configure_logging
    from orchestrator.options import SandboxOptions
    from orchestrator.results import ExecResult, FileInfo, OutputChunk
    from orchestrator.runtime import Orchestrator
    from orchestrator.session import Session
    from orchestrator.snapshots import Snapshot
    from orchestrator.tar_stream import DirCopy

__version__ = "0.1.0"

__all__ = [
    "ActionResult",
    "BindMount",
    "Client",
    "CodeResult",
    "Config",
    "ConfigError",
    "Desktop",
    "DesktopError",
    "DirCopy",
    "EngineError",
    "EngineUnavailable",
    "ExecResult",
    "ExecStream",
    "FakeBackend",
    "FileInfo",
    "FileTooLarge",
    "GuestError",
    "ImageBuildError",
    "ImageNotFound",
    "OperationTimeout",
    "OptionNotAllowed",
    "Orchestrator",
    "OutputChunk",
    "OutputFile",
    "PathNotAllowed",
    "ProtocolError",
    "SandboxBackend",
    "SandboxConnection",
    "SandboxGone",
    "SandboxInfo",
    "SandboxOptions",
    "SandboxSpec",
    "SandboxStartError",
    "SbxError",
    "Scaling",
    "Screenshot",
    "Session",
    "SessionClosed",
    "SessionError",
    "SessionLimitReached",
    "SessionNotFound",
    "Snapshot",
    "SnapshotError",
    "__version__",
    "configure_logging",
    "explain_config",
    "load_config",
]


_EXPORTS = {
    "ActionResult": "orchestrator.desktop",
    "BindMount": "orchestrator.backends.base",
    "CodeResult": "orchestrator.interpreter",
    "Client": "orchestrator.client",
    "Config": "orchestrator.config",
    "ConfigError": "orchestrator.errors",
    "Desktop": "orchestrator.desktop",
    "DesktopError": "orchestrator.errors",
    "DirCopy": "orchestrator.tar_stream",
    "EngineError": "orchestrator.errors",
    "EngineUnavailable": "orchestrator.errors",
    "ExecResult": "orchestrator.results",
    "ExecStream": "orchestrator.guest_client.exec_stream",
    "FakeBackend": "orchestrator.backends.fake",
    "FileInfo": "orchestrator.results",
    "FileTooLarge": "orchestrator.errors",
    "GuestError": "orchestrator.errors",
    "ImageBuildError": "orchestrator.errors",
    "ImageNotFound": "orchestrator.errors",
    "OperationTimeout": "orchestrator.errors",
    "OptionNotAllowed": "orchestrator.errors",
    "Orchestrator": "orchestrator.runtime",
    "OutputChunk": "orchestrator.results",
    "OutputFile": "orchestrator.interpreter",
    "PathNotAllowed": "orchestrator.errors",
    "ProtocolError": "orchestrator.errors",
    "SandboxBackend": "orchestrator.backends.base",
    "SandboxConnection": "orchestrator.guest_client.connection",
    "SandboxGone": "orchestrator.errors",
    "SandboxInfo": "orchestrator.backends.base",
    "SandboxOptions": "orchestrator.options",
    "SandboxSpec": "orchestrator.backends.base",
    "SandboxStartError": "orchestrator.errors",
    "SbxError": "orchestrator.errors",
    "Scaling": "orchestrator.desktop",
    "Screenshot": "orchestrator.desktop",
    "Session": "orchestrator.session",
    "SessionClosed": "orchestrator.errors",
    "SessionError": "orchestrator.errors",
    "SessionLimitReached": "orchestrator.errors",
    "SessionNotFound": "orchestrator.errors",
    "Snapshot": "orchestrator.snapshots",
    "SnapshotError": "orchestrator.errors",
    "configure_logging": "orchestrator.log",
    "explain_config": "orchestrator.config",
    "load_config": "orchestrator.config",
}
"""Where each public name lives.  They are imported on first use (PEP 562):
``import orchestrator.cli`` for a one-shot ``sbx run`` must not pay for the
desktop, the interpreter or the HTTP stack it never touches."""


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
