"""The async client's request building and error reading, over httpx's mock transport."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from orchestrator.api.client import _operations as ops
from orchestrator.client import ApiClientError, Client
from orchestrator.errors import SessionNotFound, ShellBusy


def test_operations_spell_paths_queries_and_bodies_once() -> None:
    call = ops.upload("s/1", "/workspace/a b.txt", b"x", mode=0o600)
    assert call.target == "/v1/sessions/s%2F1/files?path=%2Fworkspace%2Fa+b.txt&mode=384"
    assert call.all_headers() == {"Content-Type": "application/octet-stream"}
    removal = ops.remove_file("s", "/tmp/d", recursive=True)
    assert removal.target.endswith("recursive=true")
    options = ops.exec_options(stdin=b"\xff\x00", env={"A": "1"}, user="root")
    assert options == {
        "stdin_b64": base64.b64encode(b"\xff\x00").decode(),
        "env": {"A": "1"},
        "user": "root",
    }
    assert ops.exec_options(stdin="text") == {"stdin": "text"}
    streamed = ops.exec_command("s", ["true"], {}, stream=True)
    assert streamed.stream and streamed.all_headers()["Accept"] == "application/x-ndjson"
    assert json.loads(streamed.body()) == {"command": ["true"]}


def _client(handler: httpx.MockTransport) -> Client:
    return Client("http://sbx.test", "t0ken", transport=handler)


async def test_an_error_body_is_raised_as_the_librarys_class() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {"error": {"type": "session_not_found", "message": "no session x", "remedy": "r"}}
        return httpx.Response(404, json=body)

    async with _client(httpx.MockTransport(answer)) as client:
        with pytest.raises(SessionNotFound) as caught:
            await client.get_session("x")
    assert isinstance(caught.value, ApiClientError)
    assert caught.value.status == 404 and caught.value.remedy == "r"
    assert seen[0].headers["authorization"] == "Bearer t0ken"


async def test_an_error_event_mid_stream_is_raised_as_the_librarys_class() -> None:
    lines = [
        {"type": "stdout", "data": "partial"},
        {"type": "error", "status": 409, "error": "shell_busy", "message": "busy"},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == "application/x-ndjson"
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return httpx.Response(200, content=content)

    async with _client(httpx.MockTransport(answer)) as client:
        async with client.exec_stream("s", "make") as running:
            chunks = []
            with pytest.raises(ShellBusy):
                async for chunk in running:
                    chunks.append(chunk.data)
    assert chunks == [b"partial"]


async def test_a_stream_that_ends_without_a_result_is_an_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"type": "stdout", "data_b64": "/w=="}\n')

    async with _client(httpx.MockTransport(answer)) as client:
        async with client.exec_stream("s", "true") as running:
            with pytest.raises(ApiClientError, match="without a result"):
                await running.result()


async def test_a_bad_option_is_refused_before_sending() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    async with _client(httpx.MockTransport(answer)) as client:
        with pytest.raises(ApiClientError) as caught:
            await client.create_session(cpus=0)
    assert caught.value.status == 422 and caught.value.field == "cpus"


def test_a_url_that_is_not_http_is_a_clear_error() -> None:
    with pytest.raises(ApiClientError, match="http"):
        Client("ftp://x")


async def test_a_cancelled_folder_copy_ends_at_once_though_the_server_keeps_sending(
    tmp_path: pytest.TempPathFactory,
) -> None:
    import io
    import tarfile

    import trio

    head = io.BytesIO()
    with tarfile.open(fileobj=head, mode="w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = 1 << 30  # far more than will come before the cancel
        tar.addfile(info)
    header = head.getvalue()[:512]

    async def endless() -> httpx.AsyncByteStream:  # type: ignore[misc]
        yield header
        while True:
            await trio.sleep(0.01)
            yield b"\0" * 4096

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    async with _client(httpx.MockTransport(handler)) as client:
        started = trio.current_time()
        with trio.move_on_after(0.5) as scope:
            await client.get_dir("s1", "/workspace", tmp_path)  # type: ignore[arg-type]
        assert scope.cancelled_caught
        assert trio.current_time() - started < 3.0
