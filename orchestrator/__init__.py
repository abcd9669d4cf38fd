"""sbx: hardened Docker sandboxes for Claude's tools and plain exec/file calls.

The public surface is re-exported here; everything else is internal and may
change.  Start with ``Orchestrator``::

    async with Orchestrator() as orch:
        async with orch.session(image="code-runner") as s:
            print((await s.exec("echo hi")).stdout)
"""

from orchestrator.backends.base import BindMount, SandboxBackend, SandboxInfo, SandboxSpec
from orchestrator.backends.fake import FakeBackend
from orchestrator.config import Config, load_config
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
)
from orchestrator.forward import SandboxConnection
from orchestrator.interpreter import CodeResult, OutputFile
from orchestrator.log import configure_logging
from orchestrator.options import SandboxOptions
from orchestrator.results import ExecResult, FileInfo, OutputChunk
from orchestrator.runtime import Orchestrator
from orchestrator.session import ExecStream, Session

__version__ = "0.1.0"

__all__ = [
    "ActionResult",
    "BindMount",
    "CodeResult",
    "Config",
    "ConfigError",
    "Desktop",
    "DesktopError",
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
    "__version__",
    "configure_logging",
    "load_config",
]
