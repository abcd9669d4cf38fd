"""sbx: hardened Docker sandboxes for Claude's tools and plain exec/file calls.

The public surface is re-exported here; everything else is internal and may
change.  Start with ``Orchestrator``::

    async with Orchestrator() as orch:
        async with orch.session(image="code-runner") as s:
            print((await s.exec("echo hi")).stdout)
"""

from orchestrator.backends.base import SandboxBackend, SandboxInfo, SandboxSpec
from orchestrator.backends.fake import FakeBackend
from orchestrator.config import Config, load_config
from orchestrator.errors import (
    ConfigError,
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
    SessionNotFound,
)
from orchestrator.log import configure_logging
from orchestrator.options import SandboxOptions
from orchestrator.results import ExecResult, FileInfo, OutputChunk
from orchestrator.runtime import Orchestrator
from orchestrator.session import ExecStream, Session

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
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
    "PathNotAllowed",
    "ProtocolError",
    "SandboxBackend",
    "SandboxGone",
    "SandboxInfo",
    "SandboxOptions",
    "SandboxSpec",
    "SandboxStartError",
    "SbxError",
    "Session",
    "SessionClosed",
    "SessionError",
    "SessionNotFound",
    "__version__",
    "configure_logging",
    "load_config",
]
