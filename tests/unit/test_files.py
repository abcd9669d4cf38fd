"""File operations: binary safety, atomic writes, confinement to the allowed roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.errors import (
    FileTooLarge,
    GuestError,
    GuestFileExists,
    GuestFileNotFound,
    GuestIsADirectory,
    PathNotAllowed,
)


@pytest.fixture
def ws(fake_config) -> Path:
    return Path(fake_config.sandbox.allowed_roots[0])


async def test_binary_round_trip(orch: Orchestrator, ws: Path) -> None:
    data = os.urandom(300_000) + bytes(range(256))
    async with orch.session() as s:
        await s.write_file(f"{ws}/deep/er/blob.bin", data)
        assert await s.read_file(f"{ws}/deep/er/blob.bin") == data
        assert await s.read_file(f"{ws}/deep/er/blob.bin", offset=10, length=5) == data[10:15]


async def test_write_is_atomic_and_keeps_the_mode(orch: Orchestrator, ws: Path) -> None:
    target = ws / "script.sh"
    async with orch.session() as s:
        await s.write_file(str(target), "#!/bin/sh\n", mode=0o755)
        await s.write_file(str(target), "#!/bin/sh\necho 2\n")
        info = await s.stat(str(target))
    assert info.mode == 0o755
    assert target.read_text() == "#!/bin/sh\necho 2\n"
    assert [p.name for p in ws.iterdir()] == ["script.sh"]  # no temp file left behind


async def test_no_overwrite_refuses_existing_files(orch: Orchestrator, ws: Path) -> None:
    async with orch.session() as s:
        await s.write_file(f"{ws}/a", b"1")
        with pytest.raises(GuestFileExists, match="already exists"):
            await s.write_file(f"{ws}/a", b"2", overwrite=False)
    assert (ws / "a").read_bytes() == b"1"


async def test_dotdot_escape_is_refused(orch: Orchestrator, ws: Path) -> None:
    async with orch.session() as s:
        with pytest.raises(PathNotAllowed, match="outside the allowed directories"):
            await s.read_file(f"{ws}/../../../etc/passwd")
        with pytest.raises(PathNotAllowed):
            await s.write_file(f"{ws}/../escaped.txt", b"x")
    assert not (ws.parent / "escaped.txt").exists()


async def test_symlink_escape_is_refused_for_read_write_and_list(
    orch: Orchestrator, ws: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (ws / "link").symlink_to(outside)
    (ws / "filelink").symlink_to(outside / "secret")
    async with orch.session() as s:
        for attempt in (
            s.read_file(f"{ws}/link/secret"),
            s.read_file(f"{ws}/filelink"),
            s.write_file(f"{ws}/link/new", b"x"),
            s.write_file(f"{ws}/filelink", b"x"),
            s.list_files(f"{ws}/link"),
        ):
            with pytest.raises(PathNotAllowed, match="symbolic link"):
                await attempt
        # The link itself lives inside the root and may be removed.
        await s.remove(f"{ws}/link")
    assert (outside / "secret").read_text() == "s"
    assert not (outside / "new").exists()


async def test_symlink_inside_the_root_is_followed(orch: Orchestrator, ws: Path) -> None:
    (ws / "real.txt").write_text("ok")
    (ws / "alias.txt").symlink_to(ws / "real.txt")
    async with orch.session() as s:
        assert await s.read_file(f"{ws}/alias.txt") == b"ok"


async def test_relative_path_gets_told_to_be_absolute(orch: Orchestrator) -> None:
    async with orch.session() as s:
        with pytest.raises(GuestError, match="absolute"):
            await s.read_file("notes.txt")


async def test_file_over_the_cap_is_refused_on_read_and_write(
    fake_config, fake_backend, ws: Path
) -> None:
    fake_config.session.file_size_limit = 1000
    (ws / "big").write_bytes(b"x" * 2000)
    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        with pytest.raises(FileTooLarge, match="1000-byte"):
            await s.read_file(f"{ws}/big")
        assert await s.read_file(f"{ws}/big", length=500) == b"x" * 500
        with pytest.raises(FileTooLarge, match="file size limit"):
            await s.write_file(f"{ws}/new", b"y" * 1001)
    assert not (ws / "new").exists()


async def test_list_stat_mkdir_remove(orch: Orchestrator, ws: Path) -> None:
    async with orch.session() as s:
        await s.mkdir(f"{ws}/d/e")
        await s.write_file(f"{ws}/d/e/f.txt", b"abc")
        await s.write_file(f"{ws}/d/.hidden", b"")
        listing = await s.list_files(f"{ws}/d", depth=2)
        assert [(e.path, e.type) for e in listing] == [
            (f"{ws}/d/.hidden", "file"),
            (f"{ws}/d/e", "directory"),
            (f"{ws}/d/e/f.txt", "file"),
        ]
        visible = await s.list_files(f"{ws}/d", hidden=False)
        assert [e.name for e in visible] == ["e"]
        assert (await s.stat(f"{ws}/d/e/f.txt")).size == 3
        with pytest.raises(GuestError, match=r"not empty|recursive"):
            await s.remove(f"{ws}/d")
        await s.remove(f"{ws}/d", recursive=True)
        with pytest.raises(GuestFileNotFound):
            await s.stat(f"{ws}/d")
        with pytest.raises(PathNotAllowed, match="allowed root itself"):
            await s.remove(str(ws), recursive=True)
    assert ws.exists()


async def test_reading_a_directory_says_to_list_it(orch: Orchestrator, ws: Path) -> None:
    async with orch.session() as s:
        with pytest.raises(GuestIsADirectory, match="list it"):
            await s.read_file(str(ws))
