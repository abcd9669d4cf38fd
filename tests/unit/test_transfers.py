"""Streamed transfers: large files in chunks, folders as tar streams, hostile archives."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.errors import FileTooLarge, GuestFileNotFound, PathNotAllowed
from orchestrator.local_archive import unpack_tar
from orchestrator.session_transfers import FAST_FILE_BYTES


@pytest.fixture
def ws(fake_config) -> Path:
    return Path(fake_config.sandbox.allowed_roots[0])


async def test_a_file_past_the_fast_path_streams_both_ways(fake_config, fake_backend, ws) -> None:
    fake_config.session.file_size_limit = 64 << 20
    data = os.urandom(FAST_FILE_BYTES + 12345)
    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        await s.write_file(f"{ws}/big/blob", data, mode=0o640)
        assert (ws / "big/blob").read_bytes() == data
        assert (ws / "big/blob").stat().st_mode & 0o777 == 0o640
        assert not [p for p in (ws / "big").iterdir() if p.name.endswith(".sbx-tmp")]
        assert await s.read_file(f"{ws}/big/blob") == data
        digest = hashlib.sha256()
        async with s.read_file_stream(f"{ws}/big/blob", offset=7) as chunks:
            async for chunk in chunks:
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(data[7:]).hexdigest()


async def test_a_chunked_source_streams_and_the_limit_holds(fake_config, fake_backend, ws) -> None:
    fake_config.session.file_size_limit = 3 << 20

    async def chunks(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"z" * (1 << 20)

    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        await s.write_file(f"{ws}/three", chunks(3))
        assert (ws / "three").stat().st_size == 3 << 20
        with pytest.raises(FileTooLarge, match="limit"):
            await s.write_file(f"{ws}/four", chunks(4))
        assert not (ws / "four").exists()
        assert not [p for p in ws.iterdir() if p.name.endswith(".sbx-tmp")]
        with pytest.raises(FileTooLarge, match="file_size_limit"):
            await s.read_file(f"{ws}/three", max_bytes=1 << 20)


async def test_streamed_refusals_are_the_usual_errors(fake_config, fake_backend, ws) -> None:
    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        with pytest.raises(GuestFileNotFound):
            async with s.read_file_stream(f"{ws}/missing") as chunks:
                async for _ in chunks:
                    pass
        with pytest.raises(PathNotAllowed):
            await s.put_dir_archive("/etc/sbx-nope", _one_file_tar())


async def _one_file_tar() -> AsyncIterator[bytes]:
    yield _tar([("a.txt", b"hello")])


def _tar(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _make_tree(root: Path) -> None:
    (root / "a/b/c").mkdir(parents=True)
    (root / "a/b/c/deep.txt").write_text("deep")
    (root / "odd name ü;'$(x)").write_bytes(b"\x00\xff" * 100)
    (root / "a/empty").mkdir()
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "a/link").symlink_to("b/c/deep.txt")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)


def _snapshot(root: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_dir():
            found[key] = "dir"
        else:
            found[key] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                path.stat().st_mode & 0o111,
            )
    return found


async def test_a_folder_round_trips(orch: Orchestrator, ws: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    _make_tree(source)
    async with orch.session() as s:
        sent = await s.put_dir(source, f"{ws}/copy")
        got = await s.get_dir(f"{ws}/copy", tmp_path / "back")
    assert _snapshot(ws / "copy") == _snapshot(source)
    assert _snapshot(tmp_path / "back") == _snapshot(source)
    assert sent.entries == got.entries == len(_snapshot(source))
    assert got.skipped == []


async def test_put_dir_refuses_entries_that_leave_the_folder(orch: Orchestrator, ws: Path) -> None:
    async def hostile() -> AsyncIterator[bytes]:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            link = tarfile.TarInfo("out")
            link.type = tarfile.SYMTYPE
            link.linkname = str(ws.parent)
            tar.addfile(link)
            info = tarfile.TarInfo("out/escaped")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        yield buffer.getvalue()

    async with orch.session() as s:
        with pytest.raises(PathNotAllowed, match="symbolic link"):
            await s.put_dir_archive(f"{ws}/in", hostile())
        with pytest.raises(PathNotAllowed, match="leaves the folder"):
            await s.put_dir_archive(f"{ws}/in", _single(_tar([("../up", b"x")])))
    assert not (ws.parent / "escaped").exists()
    assert not (ws / "up").exists()


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_unpacking_skips_what_would_leave_the_destination(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, target in (
            ("../up.txt", tarfile.REGTYPE, ""),
            (str(outside / "abs.txt"), tarfile.REGTYPE, ""),
            ("out", tarfile.SYMTYPE, str(outside)),
            ("rel", tarfile.SYMTYPE, "../outside"),
            ("hard", tarfile.LNKTYPE, str(outside / "victim")),
            ("dev", tarfile.CHRTYPE, ""),
            ("ok.txt", tarfile.REGTYPE, ""),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            info.size = 2 if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(b"hi") if kind == tarfile.REGTYPE else None)
        for name in ("out/through.txt", "rel/through.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    (outside / "victim").write_text("keep")
    dest = tmp_path / "dest"
    done = await unpack_tar(_single(buffer.getvalue()), dest, limit=1 << 20)
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_text() == "keep"
    assert not (tmp_path / "up.txt").exists()
    assert (dest / "ok.txt").read_bytes() == b"hi"
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    # An absolute name is taken relative to the destination; the rest is refused.
    assert (dest / str(outside / "abs.txt").lstrip("/")).read_bytes() == b"hi"
    refused = {entry.split(":")[0] for entry in done.skipped}
    assert refused == {"../up.txt", "out", "rel", "hard", "dev"}


async def test_files_and_folders_stream_over_the_http_api(api, tmp_path: Path) -> None:
    from tests.api_harness import new_session

    api.config.session.file_size_limit = FAST_FILE_BYTES + 8192
    root = api.config.sandbox.allowed_roots[0]
    data = os.urandom(FAST_FILE_BYTES + 4097)
    source = tmp_path / "tree"
    source.mkdir()
    _make_tree(source)
    from orchestrator.tar_stream import iter_tar

    async def body() -> AsyncIterator[bytes]:
        for chunk in iter_tar(source):
            yield chunk

    async with api.client() as c:
        sid = await new_session(c)
        put = await c.put(f"/v1/sessions/{sid}/files", params={"path": f"{root}/big"}, content=data)
        assert put.json() == {"path": f"{root}/big", "size": len(data)}
        got = await c.get(f"/v1/sessions/{sid}/files", params={"path": f"{root}/big"})
        assert got.content == data
        assert int(got.headers["content-length"]) == len(data)
        sent = await c.put(f"/v1/sessions/{sid}/dirs", params={"path": f"{root}/t"}, content=body())
        assert sent.status_code == 200, sent.text
        tar = await c.get(f"/v1/sessions/{sid}/dirs", params={"path": f"{root}/t"})
        assert tar.headers["content-type"] == "application/x-tar"
        missing = await c.get(f"/v1/sessions/{sid}/dirs", params={"path": f"{root}/nope"})
        not_dir = await c.get(f"/v1/sessions/{sid}/dirs", params={"path": f"{root}/big"})
        over = b"o" * (FAST_FILE_BYTES + 8193)
        declared = await c.put(
            f"/v1/sessions/{sid}/files", params={"path": f"{root}/huge"}, content=over
        )

        async def chunked() -> AsyncIterator[bytes]:
            yield over

        streamed = await c.put(
            f"/v1/sessions/{sid}/files", params={"path": f"{root}/huge"}, content=chunked()
        )
    assert _snapshot(Path(root) / "t") == _snapshot(source)
    back = tmp_path / "back"
    done = await unpack_tar(_single(tar.content), back, limit=1 << 30)
    assert _snapshot(back) == _snapshot(source) and not done.skipped
    assert missing.status_code == 404
    assert not_dir.status_code in (400, 409, 422)
    for refused in (declared, streamed):
        assert refused.status_code == 413 and "file_size_limit" in refused.text
    assert not (Path(root) / "huge").exists()


async def test_a_stream_longer_than_announced_is_cut_off(fake_config, fake_backend, ws) -> None:
    """A read whose child (hijacked inside the sandbox) sends more than the limit allows
    is an error at the limit, not host memory."""
    from orchestrator.errors import GuestError
    from orchestrator.guest_client import requests as rq
    from orchestrator.guest_client import transfers

    class ToldAnotherLimit(rq.TransferReadRequest):
        def wire(self) -> dict[str, object]:
            return {**super().wire(), "limit": 1000}  # what a hijacked child would ignore

    (ws / "small").write_bytes(b"s" * 100)
    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        request = ToldAnotherLimit(path=f"{ws}/small", timeout=30, grace=1, limit=10)
        with pytest.raises(GuestError, match="more than the 10 bytes"):
            async with transfers.receive(s.client, request) as stream:
                async for _ in stream:
                    pass


async def test_a_source_that_fails_midway_leaves_no_partial_file(
    fake_config, fake_backend, ws
) -> None:
    class SourceBroke(Exception):
        pass

    async def breaks() -> AsyncIterator[bytes]:
        yield b"a" * (1 << 20)
        raise SourceBroke

    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        with pytest.raises(SourceBroke):
            await s.write_file(f"{ws}/half", breaks())
        assert (await s.exec("echo still-here")).stdout == b"still-here\n"
        leftovers = await s.exec(f"ls -a {ws}")
    assert not (ws / "half").exists()
    assert b"sbx-tmp" not in leftovers.stdout


async def test_an_archive_of_too_many_entries_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import tar_stream
    from orchestrator.errors import InvalidInput

    monkeypatch.setattr(tar_stream, "MAX_ENTRIES", 3)
    archive = _tar([(f"f{n}", b"x") for n in range(5)])
    with pytest.raises(InvalidInput, match="more than 3 entries"):
        await unpack_tar(_single(archive), tmp_path / "d", limit=1 << 20)
    assert len(os.listdir(tmp_path / "d")) == 3
