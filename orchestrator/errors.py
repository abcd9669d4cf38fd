"""The one exception hierarchy of the orchestrator.

Every message names the cause *and* the fix, because the people reading them
are operators at a terminal and models reading ``is_error`` tool results; both
need to know what to do next, not just what went wrong.  Each error also
carries, apart from its message, a ``remedy`` (what to do, in a sentence), a
``retryable`` flag (whether the *same* request may succeed if tried again)
and, where known, ``retry_after`` seconds: the HTTP API sends them as fields
of its typed error body, and its client raises the same classes.

Engine-specific exceptions (docker-py's ``APIError`` and friends) never cross
the backend boundary: ``orchestrator.backends.docker`` translates them once,
at the edge, into this tree::

    SbxError
    ├── ConfigError                 invalid sbx.toml / SBX_* / arguments
    │   ├── OptionNotAllowed        a sandbox option outside the allow-list
    │   └── OptionOverLimit         a sandbox option past the operator's ceiling ([limits])
    ├── EngineError                 the container engine failed us
    │   ├── EngineUnavailable       cannot reach the engine at all          (retryable)
    │   ├── DependencyDown          a circuit breaker is open: failing fast (retryable)
    │   ├── ImageNotFound           the sandbox image has not been built
    │   ├── ImageBuildError         building an image failed
    │   └── SandboxStartError       the sandbox did not come up             (retryable)
    ├── ProtocolError               the guest spoke something we do not
    ├── InvalidInput                input that cannot be sent as it is (text that is not Unicode)
    ├── InputTooLarge               input past a configured limit (command, stdin, file)
    ├── ToolBatchError              a batch of tool calls that cannot be answered call by call
    ├── SessionError
    │   ├── SessionClosed           the session was closed (or expired)
    │   ├── SessionNotFound         no session has that id
    │   ├── SessionLimitReached     session.max_sessions are open           (retryable)
    │   ├── SandboxGone             the sandbox died under a live session
    │   │   └── SandboxLost         ...and the session is broken or crashed for good
    │   └── OperationTimeout        the sandbox did not answer in time      (retryable)
    └── GuestError                  an operation failed inside the sandbox
        ├── PathNotAllowed          outside the allowed roots / escapes
        ├── FileTooLarge            over the size cap
        ├── GuestFileNotFound
        ├── GuestFileExists
        ├── GuestIsADirectory
        ├── GuestNotADirectory
        ├── GuestPermissionDenied
        ├── ShellBusy               a persistent shell is already running a command (retryable)
        └── DesktopError            the X desktop failed (not running, X server died...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

__all__ = [
    "ConfigError",
    "DependencyDown",
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
    "SnapshotError",
    "ToolBatchError",
    "guest_error_from_wire",
]


class SbxError(Exception):
    """Base of every error the orchestrator raises on purpose.

    ``remedy``, ``retryable`` and ``retry_after`` default to the class's and may
    be set on an instance (``with_hint``) where the raiser knows better.
    """

    remedy: str = "see the message"
    retryable: bool = False
    retry_after: float | None = None

    def with_hint(
        self,
        *,
        remedy: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> Self:
        """This error, with what to do about it said more precisely."""
        if remedy is not None:
            self.remedy = remedy
        if retryable is not None:
            self.retryable = retryable
        if retry_after is not None:
            self.retry_after = retry_after
        return self


class ConfigError(SbxError):
    """Configuration (file, environment or arguments) is invalid."""

    remedy = "fix the value the message names (`sbx config show` lists what is in force)"


class OptionNotAllowed(ConfigError):
    """A sandbox option that is not on the allow-list was requested."""

    remedy = "use only the options the message lists"


class OptionOverLimit(ConfigError):
    """A sandbox option asks for more than the operator allows (``[limits]``)."""

    remedy = "ask for less, or have the operator raise the ceiling in [limits]"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class EngineError(SbxError):
    """The container engine refused or failed an operation."""

    remedy = "check the engine (`docker info`, `sbx doctor`)"


class EngineUnavailable(EngineError):
    """The container engine cannot be reached at all."""

    remedy = "start the Docker Engine, or fix DOCKER_HOST / engine.docker_host"
    retryable = True
    retry_after = 5.0


class DependencyDown(EngineError):
    """A dependency failed again and again: its circuit breaker is open and calls fail fast
    until a probe succeeds (``breaker`` names it; ``retry_after`` is when one is next let
    through)."""

    remedy = "wait for the dependency to recover (see /readyz), then retry"
    retryable = True

    def __init__(self, message: str, *, breaker: str, retry_after: float) -> None:
        super().__init__(message)
        self.breaker = breaker
        self.retry_after = retry_after


class ImageNotFound(EngineError):
    """The requested sandbox image does not exist on the engine."""

    remedy = "build the image (`sbx images build NAME`) or load it into the engine"

    def __init__(
        self, image: str, short_name: str | None = None, *, known: Sequence[str] = ()
    ) -> None:
        """``known``: the short names of the images sbx builds, to suggest the closest."""
        import difflib

        self.image = image
        bare = image.split(":", 1)[0]
        if short_name is None:
            # One of ours under its prefix (images.prefix, "sbx-" by default), not built yet.
            ours = [name for name in known if bare.endswith(f"-{name}") and "/" not in bare]
            if ours:
                short_name = max(ours, key=len)
            elif bare.startswith("sbx-") and not known:
                short_name = bare[len("sbx-") :]
        wanted = bare.rsplit("/", 1)[-1].removeprefix("sbx-")
        self.suggestions = [] if short_name else difflib.get_close_matches(wanted, known, n=3)
        listing = "`sbx images ls` lists the images sbx builds, `sbx images build NAME` builds one"
        if short_name:
            fix = f"run `sbx images build {short_name}` (or `make images`) to build it"
        elif self.suggestions:
            fix = f"did you mean {' or '.join(self.suggestions)}? {listing}"
        else:
            fix = (
                f"{listing}; build or load any other image into the engine yourself "
                "(`docker images` lists what the engine has)"
            )
        super().__init__(f"image {image} not found — {fix}")
        self.remedy = fix


class ImageBuildError(EngineError):
    """Building a sandbox image failed."""

    remedy = "read the build's output in the message, fix the recipe or the base, rebuild"


class SandboxStartError(EngineError):
    """A sandbox container was created but never became ready."""

    remedy = "retry; if it fails again, check the image with `sbx doctor`"
    retryable = True
    retry_after = 1.0


class ProtocolError(SbxError):
    """The guest sent something this orchestrator does not understand."""

    remedy = "rebuild the images and reinstall sbx so both ends speak the same protocol"


class InvalidInput(SbxError, ValueError):
    """Input that cannot be sent into a sandbox as it is (for example text with a lone
    surrogate, which no UTF-8 program could read)."""

    remedy = "send valid Unicode without NUL bytes, or pass the data as bytes on stdin"


class ToolBatchError(SbxError, ValueError):
    """The batch itself is malformed (not one call of it): nothing was run."""

    remedy = "give every tool_use block its own id"


class InputTooLarge(SbxError, ValueError):
    """Input past a configured limit; the message names the limit and its key."""

    remedy = "send less at once: files in parts, large data on stdin or in a file"

    def __init__(self, message: str, *, limit: int, key: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.key = key


class SessionError(SbxError):
    """A session cannot do what was asked."""


class SnapshotError(SessionError):
    """A snapshot could not be taken, or a fork could not restore one."""

    remedy = "read the message: it names what failed and what to change"


class SessionClosed(SessionError):
    """The session is closed; open a new one."""

    remedy = "open a new session"


class SessionLimitReached(SessionError):
    """As many sessions are open as the configuration allows."""

    remedy = "close sessions you no longer need, or wait for one to end"
    retryable = True
    retry_after = 5.0


class SessionNotFound(SessionError):
    """No live session has the given id."""

    remedy = "list your sessions and use one of them, or open a new one"


class SandboxGone(SessionError):
    """The sandbox behind a live session stopped answering."""

    remedy = "open a new session (the sandbox and what it held are gone)"


class SandboxLost(SandboxGone):
    """The session lost its sandbox: ``broken`` (its guest stopped answering) or ``crashed``
    (the sandbox died).  The session stays listed with the cause until it is closed;
    every call on it raises this."""

    remedy = "open a new session; the message says why the sandbox went (closing it clears it)"

    def __init__(self, subject: str, state: str, cause: str) -> None:
        super().__init__(
            f"{subject} is {state}: {cause}; its sandbox was removed — open a new session"
        )
        self.state = state
        self.cause = cause


class OperationTimeout(SessionError):
    """The sandbox did not answer an operation before its deadline."""

    remedy = "retry, with a longer timeout; close the session if it stays stuck"
    retryable = True


class GuestError(SbxError):
    """An operation failed inside the sandbox.

    ``code`` is the stable machine-readable reason sent by the guest.
    """

    code: ClassVar[str] = "guest_error"
    remedy = "see the message: the operation failed inside the sandbox"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class PathNotAllowed(GuestError):
    code = "path_not_allowed"
    remedy = "use a path under the roots the message lists"


class FileTooLarge(GuestError):
    code = "too_large"
    remedy = "read or write it in parts (offset, length)"


class GuestFileNotFound(GuestError):
    code = "not_found"
    remedy = "check the path (list the directory), or create the file first"


class GuestFileExists(GuestError):
    code = "exists"
    remedy = "choose another path, or remove the existing file first"


class GuestIsADirectory(GuestError):
    code = "is_directory"
    remedy = "name a file, not a directory (list it to see what it holds)"


class GuestNotADirectory(GuestError):
    code = "not_directory"
    remedy = "a part of the path is a file; fix the path"


class GuestPermissionDenied(GuestError):
    code = "permission_denied"
    remedy = "run as a user who may (option `user`), or change the file's mode"


class ShellBusy(GuestError):
    code = "busy"
    remedy = "wait for the running command, or use another shell name"
    retryable = True
    retry_after = 1.0


class DesktopError(GuestError):
    code = "desktop"
    remedy = "restart the desktop, or use the desktop image"


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
