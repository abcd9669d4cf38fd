"""``SbxClient``: the HTTP API's operations as typed methods, over one ``HttpConnection``.

It reads ``SBX_URL`` and ``SBX_TOKEN`` when not given them, turns API
errors into ``ApiClientError`` carrying the server's message, and streams
exec output as NDJSON events so a caller can pass bytes through as they
come.  Each method builds its request and reads its answer in one place;
a client with another transport (an async one) reuses the same paths and
the same error reading, ``api_error``.

An error the server sends for an ``SbxError`` is raised here as the same
class (``SessionNotFound``, ``ShellBusy``, ...), which is also an
``ApiClientError``: code written against the library's exceptions works
unchanged against a server, and ``remedy``, ``retryable`` and
``retry_after`` come along.

It must not depend on anything beyond the standard library,
``orchestrator.errors`` and ``orchestrator.error_kinds``: the thin
``sbx run`` imports it first thing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode

from orchestrator.api.client import _operations as ops
from orchestrator.api.client._connection import HttpConnection
from orchestrator.error_kinds import error_class
from orchestrator.errors import SbxError

if TYPE_CHECKING:
    from orchestrator.tar_stream import DirCopy

__all__ = ["DEFAULT_URL", "ApiClientError", "JsonObject", "SbxClient", "api_error", "unreachable"]

DEFAULT_URL = "http://127.0.0.1:8765"

_TAR = "application/x-tar"
_CHUNK = 1 << 20

JsonObject = dict[str, Any]
"""A JSON object as the API returns it; its fields are in ``/openapi.json``."""


class ApiClientError(SbxError):
    """An API error (``status`` and ``kind`` from its body), or ``status`` 0 when the
    server could not be reached (``kind`` ``unreachable``) or the URL is not one.

    Raised as a subclass that is also the library's class for ``kind`` where there is
    one, so ``except SessionNotFound`` catches a remote one too."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        remedy: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        # Not super().__init__: the library class in the MRO may want other arguments.
        Exception.__init__(self, message)
        self.status = status
        self.kind = kind
        self.message = message
        self.remedy = remedy or "see the message"
        self.retryable = retryable
        self.retry_after = retry_after
        self.field = field
        # What the library's own classes carry, so handlers written for them work.
        self.details: dict[str, Any] = {}
        self.limit = 0
        self.key = field or ""
        self.breaker = ""


_REMOTE: dict[type[SbxError], type[ApiClientError]] = {}


def _remote_class(kind: str) -> type[ApiClientError]:
    """``ApiClientError`` joined with the library's class for ``kind`` (made once)."""
    library = error_class(kind)
    if library is None or library is SbxError:
        return ApiClientError
    remote = _REMOTE.get(library)
    if remote is None:
        remote = type(library.__name__, (ApiClientError, library), {"__module__": __name__})
        _REMOTE[library] = remote
    return remote


def api_error(status: int, body: bytes, reason: str = "") -> ApiClientError:
    """The error of an error response: the server's ``type``, message and hints, raised as
    the library's class for that type where there is one."""
    text = body.decode("utf-8", errors="replace")
    try:
        error = json.loads(body).get("error", {})
        kind, message = str(error.get("type", "error")), str(error.get("message") or text)
    except (ValueError, AttributeError):
        return ApiClientError(status, "error", f"{text or reason or 'no detail'} (HTTP {status})")
    retry_after = error.get("retry_after")
    return _remote_class(kind)(
        status,
        kind,
        f"{message} (HTTP {status})",
        remedy=error.get("remedy") if isinstance(error.get("remedy"), str) else None,
        retryable=error.get("retryable") is True,
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        field=error.get("field") if isinstance(error.get("field"), str) else None,
    )


class SbxClient:
    """The API of one ``sbx serve``: sessions, exec (whole or streamed), tools, files.

    One keep-alive connection, used by one thread at a time.  Use it as a
    context manager, or ``close()`` it.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float = 600.0
    ) -> None:
        self.url = (url or os.environ.get("SBX_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("SBX_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._http = HttpConnection(self.url, headers, timeout=timeout)
        except ValueError:
            raise ApiClientError(
                0, "invalid_url", f"--url/SBX_URL must be an http(s) URL, got {self.url!r}"
            ) from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SbxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """One request; the response body, or ``ApiClientError`` for an error status."""
        return self.send(ops.ApiCall(method, path, params, json_body, content, headers))

    def send(self, call: ops.ApiCall) -> bytes:
        """Send one of the API's operations (``_operations``); its response body."""
        try:
            status, data = self._http.request(
                call.method, call.target, call.body(), call.all_headers()
            )
        except (OSError, ValueError) as exc:
            raise self._unreachable(exc) from None
        if status >= 400:
            raise api_error(status, data)
        return data

    def _json(self, call: ops.ApiCall) -> Any:
        data = self.send(call)
        return json.loads(data) if data else None

    def _unreachable(self, exc: BaseException) -> ApiClientError:
        return unreachable(self.url, exc)

    # -- sessions ------------------------------------------------------------------------

    def create_session(self, **options: Any) -> JsonObject:
        """Start a session (``image``, ``memory``, ``cpus``, ``network``, ``env``, ...)."""
        session: JsonObject = self._json(ops.create_session(options))
        return session

    def list_sessions(self) -> list[JsonObject]:
        sessions: list[JsonObject] = self._json(ops.list_sessions())["sessions"]
        return sessions

    def snapshot_session(self, session_id: str) -> JsonObject:
        """Keep a session's filesystem as an image; its ``image`` starts forks."""
        result: JsonObject = self._json(
            ops.ApiCall("POST", ops.session_path(session_id, "snapshot"))
        )
        return result

    def delete_session(self, session_id: str) -> None:
        """Close a session: its calls are cancelled and its sandbox removed."""
        self.send(ops.delete_session(session_id))

    # -- exec, tools, files ----------------------------------------------------------------

    def exec(self, session_id: str, command: str | list[str], **options: Any) -> JsonObject:
        """Run a command to completion; the result's fields (``exit_code``, ``stdout``, ...)."""
        result: JsonObject = self._json(ops.exec_command(session_id, command, options))
        return result

    def exec_stream(
        self, session_id: str, command: str | list[str], **options: Any
    ) -> Generator[JsonObject, None, None]:
        """NDJSON events: ``stdout``/``stderr`` chunks, then ``result`` (or ``error``).

        Leaving the loop early closes the connection, which cancels the command."""
        call = ops.exec_command(session_id, command, options, stream=True)
        finished = False
        try:
            try:
                status, lines = self._http.stream_lines(
                    call.method, call.target, call.body(), call.all_headers()
                )
                if status >= 400:
                    raise api_error(status, b"\n".join(lines))
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            except (OSError, ValueError) as exc:
                raise ApiClientError(
                    0, "unreachable", f"lost the sbx API at {self.url} ({exc})"
                ) from None
            finished = True
        finally:
            if not finished:
                self._http.close()  # a stream cut short leaves the connection unusable

    def run_tools(
        self,
        session_id: str,
        tool_uses: list[JsonObject],
        tool_types: dict[str, str] | None = None,
    ) -> list[JsonObject]:
        """Run ``tool_use`` blocks; the ``tool_result`` blocks, in the same order."""
        answer = self._json(ops.run_tools(session_id, tool_uses, tool_types))
        results: list[JsonObject] = answer["tool_results"]
        return results

    def upload(self, session_id: str, path: str, data: bytes, mode: int | None = None) -> None:
        """Write ``data`` to ``path`` in the sandbox, atomically (parents are created)."""
        self.send(ops.upload(session_id, path, data, mode))

    def download(self, session_id: str, path: str) -> bytes:
        return self.send(ops.download(session_id, path))

    def upload_file(
        self, session_id: str, path: str, local: str | Path, mode: int | None = None
    ) -> JsonObject:
        """Stream the local file ``local`` to ``path`` in the sandbox, whatever its size."""
        params: dict[str, Any] = {"path": path}
        if mode is not None:
            params["mode"] = mode
        with open(local, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            chunks = iter(lambda: source.read(_CHUNK), b"")
            return self._streamed("files", session_id, params, chunks, length=size)

    def download_to(self, session_id: str, path: str, out: BinaryIO) -> int:
        """Stream ``path`` in the sandbox into the open binary file ``out``; its size."""
        written = 0
        with self._download("files", session_id, path) as body:
            for piece in body:
                out.write(piece)
                written += len(piece)
        return written

    def download_file(self, session_id: str, path: str, local: str | Path) -> int:
        """Stream ``path`` in the sandbox into the local file ``local``; its size."""
        target = Path(local)
        partial = target.with_name(f".{target.name}.sbx-partial")
        try:
            with open(partial, "wb") as out:
                written = self.download_to(session_id, path, out)
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return written

    def put_dir(self, session_id: str, local: str | Path, remote: str) -> JsonObject:
        """Copy the local folder ``local`` into the sandbox folder ``remote``, as a tar stream."""
        from orchestrator.tar_stream import iter_tar  # tarfile: only for those who copy folders

        folder = Path(local)
        if not folder.is_dir():
            raise ApiClientError(0, "invalid_request", f"{folder} is not a local folder")
        return self._streamed("dirs", session_id, {"path": remote}, iter_tar(folder))

    def get_dir(self, session_id: str, remote: str, local: str | Path) -> DirCopy:
        """Copy the sandbox folder ``remote`` into the local folder ``local``.

        The archive comes from the sandbox: entries that would land outside ``local``
        (absolute names, ``..``, links out, devices) are skipped and listed in
        ``skipped``, never written.
        """
        import tarfile

        from orchestrator.tar_stream import DirCopy, PiecesReader, unpack

        outcome = DirCopy()
        with self._download("dirs", session_id, remote) as body:
            try:
                unpack(PiecesReader(body), Path(local), outcome)
            except tarfile.TarError as exc:
                raise ApiClientError(
                    0, "invalid_archive", f"the folder's archive is not a valid tar stream: {exc}"
                ) from None
        return outcome

    def _streamed(
        self,
        kind: str,
        session_id: str,
        params: dict[str, Any],
        chunks: Iterator[bytes],
        *,
        length: int | None = None,
    ) -> JsonObject:
        path = ops.session_path(session_id, kind) + "?" + urlencode(params)
        headers = {"Content-Type": "application/octet-stream" if kind == "files" else _TAR}
        try:
            status, data = self._http.send_streamed("PUT", path, chunks, headers, length=length)
        except (OSError, ValueError) as exc:
            raise self._unreachable(exc) from None
        if status >= 400:
            raise api_error(status, data)
        answer: JsonObject = json.loads(data)
        return answer

    @contextmanager
    def _download(self, kind: str, session_id: str, path: str) -> Iterator[Iterator[bytes]]:
        target = ops.session_path(session_id, kind) + "?" + urlencode({"path": path})
        try:
            status, body = self._http.stream("GET", target)
            if status >= 400:
                raise api_error(status, b"".join(body))
            yield body
            for _ in body:  # whatever was left unread, so the connection can be reused
                pass
        except (OSError, ValueError) as exc:
            self._http.close()
            raise self._unreachable(exc) from None
        except BaseException:
            self._http.close()
            raise

    def view_url(self, session_id: str, *, interactive: bool = False) -> str:
        """A URL that shows a desktop session live in a browser."""
        return str(self._json(ops.view(session_id, interactive=interactive))["url"])

    def screenshot(self, session_id: str, *, scaled: bool = False) -> bytes:
        """A PNG of a desktop session's screen."""
        return self.send(ops.screenshot(session_id, scaled=scaled))

    def get(self, path: str) -> Any:
        """``GET path`` (``/healthz``, ``/v1/agent-runs``, ...), its JSON answer."""
        return self._json(ops.ApiCall("GET", path))


def unreachable(url: str, exc: BaseException) -> ApiClientError:
    """The error for a server that could not be reached (``status`` 0)."""
    return ApiClientError(
        0,
        "unreachable",
        f"cannot reach the sbx API at {url} ({exc}); start `sbx serve` or point "
        "--url/SBX_URL at a running one",
    )
