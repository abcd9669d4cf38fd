"""Files of any size and whole folders in real sandboxes: byte for byte, safe on the way out."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator
from orchestrator.errors import PathNotAllowed
from tests.integration.conftest import IMAGE

BIG = 100 << 20


def _tree_digest(root: Path) -> dict[str, object]:
    """Every entry below ``root``: a file's hash and exec bit, a link's target, or 'dir'."""
    found: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = (
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                    os.access(path, os.X_OK),
                )
    return found


def make_tree(root: Path, files: int = 5000) -> None:
    """``files`` files, nested three deep, odd names, relative symlinks among them."""
    rng = random.Random(7)
    odd = ["space name", "ünïcødé", "semi;colon", "quote'\"", "dash -n", "$(not run)", ".hidden"]
    for index in range(files):
        folder = root / f"d{index % 10}" / f"e{index % 7}" / f"f{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{odd[index % len(odd)]}-{index}"
        if index % 50 == 49:
            (folder / name).symlink_to(f"../f{(index + 1) % 3}")
            continue
        (folder / name).write_bytes(rng.randbytes(rng.randrange(0, 4096)))
        if index % 13 == 0:
            (folder / name).chmod(0o755)
    (root / "empty-dir").mkdir()
    (root / "top-link").symlink_to("d1/e1")


@pytest.fixture
def big_config(config: Config) -> Config:
    config.session.file_size_limit = 256 << 20
    return config


async def test_a_100_mib_file_round_trips_byte_for_byte(big_config: Config) -> None:
    data = random.Random(1).randbytes(BIG)
    async with Orchestrator(big_config) as orch, orch.session(image=IMAGE) as s:
        await s.write_file("/workspace/big.bin", data)
        inside = await s.exec("sha256sum /workspace/big.bin")
        assert inside.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
        back = hashlib.sha256()
        async with s.read_file_stream("/workspace/big.bin") as chunks:
            async for chunk in chunks:
                back.update(chunk)
        assert back.hexdigest() == hashlib.sha256(data).hexdigest()
        assert await s.read_file("/workspace/big.bin") == data
        listing = await s.exec("ls -a /workspace")
        assert b"sbx-tmp" not in listing.stdout


async def test_a_5000_file_folder_round_trips(orch: Orchestrator, tmp_path: Path) -> None:
    source = tmp_path / "source"
    make_tree(source)
    async with orch.session(image=IMAGE) as s:
        sent = await s.put_dir(source, "/workspace/tree")
        count = await s.exec("find /workspace/tree -mindepth 1 | wc -l")
        assert int(count.stdout) == len(_tree_digest(source))
        got = await s.get_dir("/workspace/tree", tmp_path / "back")
    assert _tree_digest(tmp_path / "back") == _tree_digest(source)
    assert sent.entries == got.entries == len(_tree_digest(source))
    assert got.skipped == []


HOSTILE_TAR = r"""
import io, sys, tarfile
out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
def add(name, kind=tarfile.REGTYPE, link="", data=b"pwned"):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    out.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
add("../escaped-dotdot")
add("/tmp/SBXHOST/escaped-absolute")
add("out", tarfile.SYMTYPE, "/tmp/SBXHOST")
add("out/through-link")
add("rel", tarfile.SYMTYPE, "../../..")
add("rel/through-relative")
add("hard", tarfile.LNKTYPE, "/tmp/SBXHOST/victim")
add("null", tarfile.CHRTYPE)
add("fine.txt", data=b"fine")
out.close()
"""


async def test_a_hostile_archive_from_the_sandbox_cannot_write_outside(
    orch: Orchestrator, tmp_path: Path
) -> None:
    """The guest's own get_dir is replaced by a forged tar: what the host unpacks must stay
    inside the destination whatever the archive says."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched")
    script = HOSTILE_TAR.replace("/tmp/SBXHOST", str(outside))
    dest = tmp_path / "dest"
    async with orch.session(image=IMAGE) as s:
        await s.write_file("/workspace/forge.py", script)
        forged = await s.exec("python3 /workspace/forge.py > /workspace/forged.tar")
        assert forged.exit_code == 0, forged.stderr_text

        from orchestrator.local_archive import unpack_tar

        async with s.read_file_stream("/workspace/forged.tar") as chunks:
            done = await unpack_tar(chunks, dest, limit=1 << 20)
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_text() == "untouched"
    assert not (tmp_path / "escaped-dotdot").exists()
    assert (dest / "fine.txt").read_text() == "fine"
    for path in dest.rglob("*"):
        assert not path.is_symlink(), path
        assert path.resolve().is_relative_to(dest.resolve())
    assert {entry.split(":")[0] for entry in done.skipped} >= {"../escaped-dotdot", "out", "hard"}


async def test_put_dir_cannot_leave_the_allowed_roots(orch: Orchestrator, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a").write_text("a")
    async with orch.session(image=IMAGE) as s:
        with pytest.raises(PathNotAllowed):
            await s.put_dir(tmp_path / "src", "/etc/sbx-test")
        await s.exec("ln -s /etc /workspace/etc-link")
        with pytest.raises(PathNotAllowed):
            await s.put_dir(tmp_path / "src", "/workspace/etc-link/sub")


async def test_exec_details_in_a_real_sandbox(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE) as s:
        await s.exec("mkdir -p /workspace/proj/src && printf 'x' > /workspace/proj/plain")
        assert (await s.exec("pwd", cwd="proj/src")).stdout == b"/workspace/proj/src\n"
        missing = await s.exec(["definitely-not-installed"])
        assert (missing.exit_code, missing.spawn_error) == (127, "not_found")
        denied = await s.exec(["./plain"], cwd="proj")
        assert (denied.exit_code, denied.spawn_error) == (126, "permission_denied")
        echoed = await s.exec(
            ["python3", "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"],
            stdin=b"\x00\x01\xfe\xff",
        )
        assert echoed.stdout == b"\xff\xfe\x01\x00"
        assert (await s.exec("cat", stdin="texte à lire")).stdout == "texte à lire".encode()


async def test_get_dir_skips_links_that_lead_out_and_says_so(
    orch: Orchestrator, tmp_path: Path
) -> None:
    async with orch.session(image=IMAGE) as s:
        await s.exec(
            "mkdir -p /workspace/d/sub && echo hi > /workspace/d/sub/f && "
            "ln -s /etc/passwd /workspace/d/abs && ln -s ../../../../etc /workspace/d/up && "
            "ln -s sub/f /workspace/d/inside && mkfifo /workspace/d/fifo"
        )
        got = await s.get_dir("/workspace/d", tmp_path / "d")
    assert (tmp_path / "d/sub/f").read_text() == "hi\n"
    assert os.readlink(tmp_path / "d/inside") == "sub/f"
    assert not (tmp_path / "d/abs").exists() and not (tmp_path / "d/up").is_symlink()
    assert {entry.split(":")[0] for entry in got.skipped} == {"abs", "up", "fifo"}
    assert not (tmp_path / "d/fifo").exists()
