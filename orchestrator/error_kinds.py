"""How each error is named and given a status on the wire: one table for server and client.

The HTTP API answers an ``SbxError`` with the status and the ``type`` this
table gives its class (the most specific class listed first wins), and the
client of the API raises the same class again from that ``type``.  Standard
library only: the thin ``sbx run`` client imports it.

Must not: import anything above ``orchestrator.errors``.
"""

from __future__ import annotations

from orchestrator import errors

__all__ = ["ERROR_KINDS", "error_class", "kind_of"]

ERROR_KINDS: tuple[tuple[type[errors.SbxError], int, str], ...] = (
    (errors.SessionNotFound, 404, "session_not_found"),
    (errors.SessionClosed, 410, "session_closed"),
    (errors.ImageNotFound, 422, "image_not_found"),
    (errors.OptionOverLimit, 422, "option_over_limit"),
    (errors.OptionNotAllowed, 422, "option_not_allowed"),
    (errors.ConfigError, 422, "invalid_option"),
    (errors.PathNotAllowed, 403, "path_not_allowed"),
    (errors.GuestFileNotFound, 404, "file_not_found"),
    (errors.GuestFileExists, 409, "file_exists"),
    (errors.GuestIsADirectory, 400, "is_a_directory"),
    (errors.GuestNotADirectory, 400, "not_a_directory"),
    (errors.FileTooLarge, 413, "file_too_large"),
    (errors.GuestPermissionDenied, 403, "permission_denied"),
    (errors.ShellBusy, 409, "shell_busy"),
    (errors.DesktopError, 409, "desktop_unavailable"),
    (errors.GuestError, 400, "sandbox_error"),
    (errors.InputTooLarge, 413, "input_too_large"),
    (errors.InvalidInput, 422, "invalid_input"),
    (errors.ToolBatchError, 400, "invalid_tool_batch"),
    (errors.OperationTimeout, 504, "sandbox_timeout"),
    (errors.SandboxLost, 503, "sandbox_lost"),
    (errors.SandboxGone, 502, "sandbox_gone"),
    (errors.DependencyDown, 503, "dependency_down"),
    (errors.EngineUnavailable, 503, "engine_unavailable"),
    (errors.SandboxStartError, 502, "sandbox_start_failed"),
    (errors.ImageBuildError, 502, "image_build_failed"),
    (errors.EngineError, 502, "engine_error"),
    (errors.SessionLimitReached, 429, "session_limit"),
    (errors.SnapshotError, 502, "snapshot_failed"),
    (errors.SessionError, 409, "session_error"),
    (errors.ProtocolError, 502, "protocol_error"),
    (errors.SbxError, 400, "error"),
)

_BY_KIND = {kind: cls for cls, _, kind in ERROR_KINDS}


def kind_of(exc: BaseException) -> tuple[int, str]:
    """The status and ``type`` an exception is sent with (``500``/``internal_error`` for a bug)."""
    for cls, status, kind in ERROR_KINDS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal_error"


def error_class(kind: str) -> type[errors.SbxError] | None:
    """The class an error ``type`` from the wire stands for; ``None`` for the API's own kinds."""
    return _BY_KIND.get(kind)
