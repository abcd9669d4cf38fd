"""The one exception hierarchy of the orchestrator.

Every message names the cause *and* the fix, because the people reading them
are operators at a terminal and models reading ``is_error`` tool results; both
need to know what to do next, not just what went wrong.

Engine-specific exceptions (docker-py's ``APIError`` and friends) never cross
the backend boundary: ``orchestrator.backends.docker`` translates them once,
at the edge, into this tree::

    SbxError
    ├── ConfigError                 invalid sbx.toml / SBX_* / arguments
    │   ├── OptionNotAllowed        a sandbox option outside the allow-list
    │   └── OptionOverLimit         a sandbox option past the operator's ceiling ([limits])
    ├── EngineError                 the container engine failed us
    │   ├── EngineUnavailable       cannot reach the engine at all
    │   ├── ImageNotFound           the sandbox image has not been built
    │   ├── ImageBuildError         building an image failed
    │   └── SandboxStartError       the sandbox did not come up
    ├── ProtocolError               the guest spoke something we do not
    ├── InvalidInput                input that cannot be sent as it is (text that is not Unicode)
    ├── InputTooLarge               input past a configured limit (command, stdin, file)
    ├── SessionError
    │   ├── SessionClosed           the session was closed (or expired)
    │   ├── SessionNotFound         no session has that id
    │   ├── SessionLimitReached     session.max_sessions are open
    │   ├── SandboxGone             the sandbox died under a live session
    │   │   └── SandboxLost         ...and the session is broken or crashed for good
    │   └── OperationTimeout        the sandbox did not answer in time
    └── GuestError                  an operation failed inside the sandbox
        ├── PathNotAllowed          outside the allowed roots / escapes
        ├── FileTooLarge            over the size cap
        ├── GuestFileNotFound
        ├── GuestFileExists
        ├── GuestIsADirectory
        ├── GuestNotADirectory
        ├── GuestPermissionDenied
        ├── ShellBusy               a persistent shell is already running a command
        └── DesktopError            the X desktop failed (not running, X server died...)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ConfigError",
    "DesktopError",
    "EngineError",
    "EngineUnavailable",
    "FileTooLarge",
    "GuestError",
    "GuestFileExists",
    "GuestFileNotFound",
    "GuestIsADirectory",
    "GuestNotADirectory",
    "GuestPermissionDenied",
    "ImageBuildError",
    "ImageNotFound",
    "InputTooLarge",
    "InvalidInput",
    "OperationTimeout",
    "OptionNotAllowed",
    "OptionOverLimit",
    "PathNotAllowed",
    "ProtocolError",
    "SandboxGone",
    "SandboxLost",
    "SandboxStartError",
    "SbxError",
    "SessionClosed",
    "SessionError",
    "SessionLimitReached",
    "SessionNotFound",
    "ShellBusy",
    "guest_error_from_wire",
]


class SbxError(Exception):
    """Base of every error the orchestrator raises on purpose."""


class ConfigError(SbxError):
    """Configuration (file, environment or arguments) is invalid."""


class OptionNotAllowed(ConfigError):
    """A sandbox option that is not on the allow-list was requested."""


class OptionOverLimit(ConfigError):
    """A sandbox option asks for more than the operator allows (``[limits]``)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class EngineError(SbxError):
    """The container engine refused or failed an operation."""


class EngineUnavailable(EngineError):
    """The container engine cannot be reached at all."""


class ImageNotFound(EngineError):
    """The requested sandbox image does not exist on the engine."""

    def __init__(self, image: str, short_name: str | None = None) -> None:
        self.image = image
        bare = image.split(":", 1)[0]
        if short_name is None and bare.startswith("sbx-"):
            short_name = bare[len("sbx-") :]
        if short_name:
            fix = f"run `sbx images build {short_name}` (or `make images`) to build it"
        else:
            fix = (
                "build or load it into the engine yourself (`docker images` lists what the engine "
                "has); sbx builds its own images with `sbx images build`"
            )
        super().__init__(f"image {image} not found — {fix}")


class ImageBuildError(EngineError):
    """Building a sandbox image failed."""


class SandboxStartError(EngineError):
    """A sandbox container was created but never became ready."""


class ProtocolError(SbxError):
    """The guest sent something this orchestrator does not understand."""


class InvalidInput(SbxError, ValueError):
    """Input that cannot be sent into a sandbox as it is (for example text with a lone
    surrogate, which no UTF-8 program could read)."""


class InputTooLarge(SbxError, ValueError):
    """Input past a configured limit; the message names the limit and its key."""

    def __init__(self, message: str, *, limit: int, key: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.key = key


class SessionError(SbxError):
    """A session cannot do what was asked."""


class SessionClosed(SessionError):
    """The session is closed; open a new one."""


class SessionLimitReached(SessionError):
    """As many sessions are open as the configuration allows."""


class SessionNotFound(SessionError):
    """No live session has the given id."""


class SandboxGone(SessionError):
    """The sandbox behind a live session stopped answering."""


class SandboxLost(SandboxGone):
    """The session lost its sandbox: ``broken`` (its guest stopped answering) or ``crashed``
    (the sandbox died).  The session stays listed with the cause until it is closed;
    every call on it raises this."""

    def __init__(self, subject: str, state: str, cause: str) -> None:
        super().__init__(
            f"{subject} is {state}: {cause}; its sandbox was removed — open a new session"
        )
        self.state = state
        self.cause = cause


class OperationTimeout(SessionError):
    """The sandbox did not answer an operation before its deadline."""


class GuestError(SbxError):
    """An operation failed inside the sandbox.

    ``code`` is the stable machine-readable reason sent by the guest.
    """

    code: ClassVar[str] = "guest_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class PathNotAllowed(GuestError):
    code = "path_not_allowed"


class FileTooLarge(GuestError):
    code = "too_large"


class GuestFileNotFound(GuestError):
    code = "not_found"


class GuestFileExists(GuestError):
    code = "exists"


class GuestIsADirectory(GuestError):
    code = "is_directory"


class GuestNotADirectory(GuestError):
    code = "not_directory"


class GuestPermissionDenied(GuestError):
    code = "permission_denied"


class ShellBusy(GuestError):
    code = "busy"


class DesktopError(GuestError):
    code = "desktop"


_GUEST_ERRORS: dict[str, type[GuestError]] = {
    cls.code: cls
    for cls in (
        PathNotAllowed,
        FileTooLarge,
        GuestFileNotFound,
        GuestFileExists,
        GuestIsADirectory,
        GuestNotADirectory,
        GuestPermissionDenied,
        ShellBusy,
        DesktopError,
    )
}


def guest_error_from_wire(code: str, message: str, details: dict[str, Any] | None) -> GuestError:
    """Turn an error frame from the guest into the matching exception."""
    cls = _GUEST_ERRORS.get(code, GuestError)
    err = cls(message, details=details)
    if cls is GuestError:
        err.details.setdefault("code", code)
    return err
