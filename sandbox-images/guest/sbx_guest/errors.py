"""The guest's errors: how a failed operation is told to the host.

A ``CallError`` raised anywhere in an operation becomes one error result
(``res`` with ``ok: false``) carrying its code, message and details; an
``OSError`` on a path becomes one through ``os_error``.  The codes are those
of ``protocol.ERROR_CODES``, the one table both sides share, because the host
maps each code to an exception the user sees.  Must not: carry a code that is
not in that table (``CallError`` refuses one), or know about any operation.
"""

from __future__ import annotations

import errno

from . import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Optional


class UnknownErrorCode(LookupError):
    """A guest bug: an error code missing from ``protocol.ERROR_CODES``.

    Not a ``ValueError``: the guest reports those as the caller's bad
    arguments, and this is the guest's fault (it is reported as ``internal``).
    """


class CallError(Exception):
    """An operation failed in a way the host should hear about as an error frame."""

    def __init__(self, code: str, message: str, details: Optional[dict] = None) -> None:
        if code not in protocol.ERROR_CODES:
            raise UnknownErrorCode(
                "error code %r is not in protocol.ERROR_CODES (raised for: %s)" % (code, message)
            )
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


_ERRNO_CODES = {
    errno.ENOENT: protocol.E_NOT_FOUND,
    errno.EEXIST: protocol.E_EXISTS,
    errno.ENOTEMPTY: protocol.E_EXISTS,
    errno.EISDIR: protocol.E_IS_DIRECTORY,
    errno.ENOTDIR: protocol.E_NOT_DIRECTORY,
    errno.EACCES: protocol.E_PERMISSION,
    errno.EPERM: protocol.E_PERMISSION,
    errno.EROFS: protocol.E_PERMISSION,
    errno.ELOOP: protocol.E_PATH_NOT_ALLOWED,
}

_HINTS = {
    errno.ENOENT: "check the path (list its directory to see what is there)",
    errno.EEXIST: "remove it first or choose another path",
    errno.ENOTEMPTY: "remove its contents first or ask for a recursive removal",
    errno.EISDIR: "it is a directory; pass a file path, or list the directory instead",
    errno.ENOTDIR: "a component of the path is not a directory",
    errno.EACCES: "the sandbox user may not access it",
    errno.EPERM: "the sandbox user may not access it",
    errno.EROFS: "that part of the sandbox is read-only; write under an allowed root instead",
    errno.ENOSPC: "the sandbox's disk is full; delete files or give the sandbox a larger tmpfs",
    errno.ELOOP: "the path is a symbolic link, which is not followed here",
}


def os_error(exc: OSError, path: str, action: str) -> CallError:
    """``exc``, raised while doing ``action`` on ``path``, as the error the host should see."""
    hint = _HINTS.get(exc.errno or 0, "")
    message = "cannot %s %s: %s" % (action, path, exc.strerror or exc)
    if hint:
        message += " -- " + hint
    return CallError(
        _ERRNO_CODES.get(exc.errno or 0, protocol.E_INTERNAL),
        message,
        {"path": path, "errno": exc.errno},
    )
