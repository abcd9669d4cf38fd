"""Snapshots without an engine: the guest's archive and restore, the image catalog's rules,
who may fork what, and which image labels a fork believes."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator import Orchestrator
from orchestrator.backends.base import ImageDefaults
from orchestrator.backends.docker.backend import image_defaults_from
from orchestrator.errors import ConfigError, EngineError, ImageNotFound, SnapshotError
from orchestrator.images.catalog import (
    collect_snapshots,
    list_catalog,
    parse_duration,
    remove_images,
)
from orchestrator.images.engine import EngineImage
from orchestrator.snapshots import check_fork_allowed, data_mounts


@pytest.fixture
def snapshot_files(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("snapshot_files")


def make_tree(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "a.txt").write_bytes(b"hello")
    (root / "d" / "e" / "big.bin").write_bytes(os.urandom(300_000))
    (root / "locked").write_bytes(b"secret")
    (root / "locked").chmod(0o000)
    (root / "link").symlink_to("/etc/passwd")
    os.mkfifo(root / "fifo")


def test_archive_then_restore_gives_back_the_tree_with_modes_and_links(
    tmp_path: Path, snapshot_files: ModuleType
) -> None:
    mount = tmp_path / "workspace"
    mount.mkdir()
    make_tree(mount)
    out = io.BytesIO()
    summary = snapshot_files.archive(".sbx-snapshot/abc", [str(mount)], out)
    assert summary["files"] == 3
    assert summary["bytes"] == 5 + 300_000 + 6
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    prefix = ".sbx-snapshot/abc/" + str(mount).strip("/")
    assert names[:2] == [".sbx-snapshot", ".sbx-snapshot/abc"]
    assert f"{prefix}/d/e/big.bin" in names and f"{prefix}/link" in names

    unpacked = tmp_path / "image"
    unpacked.mkdir()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        tar.extractall(unpacked, filter="tar")
    fork = tmp_path / "fork"
    fork.mkdir()
    source = unpacked / ".sbx-snapshot" / "abc" / str(mount).strip("/")
    totals = snapshot_files.restore(str(source), str(fork))
    assert totals == {"files": 3, "bytes": 300_011}
    assert (fork / "d" / "a.txt").read_bytes() == b"hello"
    assert (fork / "d" / "e" / "big.bin").read_bytes() == (mount / "d/e/big.bin").read_bytes()
    assert os.readlink(fork / "link") == "/etc/passwd"
    assert (fork / "locked").stat().st_mode & 0o777 == 0
    assert (fork / "fifo").is_fifo()


def test_the_guests_own_runtime_state_is_never_archived(snapshot_files: ModuleType) -> None:
    assert snapshot_files._guest_state("/tmp/sbx-desktop/wm.log")
    assert snapshot_files._guest_state("/tmp/.X11-unix")
    assert snapshot_files._guest_state("/tmp/.X99-lock")
    assert not snapshot_files._guest_state("/tmp/my-notes")
    assert data_mounts({"/tmp": 1, "/run": 1, "/workspace": 2}) == ["/tmp", "/workspace"]


def test_a_file_that_shrinks_while_archived_is_padded_not_fatal(
    tmp_path: Path, snapshot_files: ModuleType
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = snapshot_files._Exact(fd, 10)
        assert reader.read(100) == b"abc"
        assert reader.read(100) == b"\0" * 7
        assert reader.read(100) == b""
    finally:
        os.close(fd)


def test_restore_never_writes_through_what_is_there_and_names_the_mount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot_files: ModuleType
) -> None:
    target = tmp_path / "w"
    kept = tmp_path / "snap" / str(target).strip("/")
    kept.mkdir(parents=True)
    (kept / "x").write_bytes(b"from the snapshot")
    target.mkdir()
    (target / "x").symlink_to(tmp_path / "elsewhere")
    assert snapshot_files.main(["restore", str(tmp_path / "snap"), str(target)]) == 1
    problem = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert problem["mount"] == str(target)
    assert problem["errno"] == 17  # EEXIST: O_EXCL|O_NOFOLLOW, never through the link
    assert not (tmp_path / "elsewhere").exists()


def test_only_the_owner_of_a_snapshot_may_fork_it_over_the_api() -> None:
    snap = ImageDefaults(snapshot_files="/.sbx-snapshot/0123456789ab", snapshot_client="alice")
    check_fork_allowed("sbx-snapshot:x", snap, "alice")
    check_fork_allowed("sbx-snapshot:x", snap, None)  # local use
    with pytest.raises(ImageNotFound):
        check_fork_allowed("sbx-snapshot:x", snap, "bob")
    check_fork_allowed("myimg", ImageDefaults(), "bob")


def test_a_fork_restores_only_a_directory_of_the_shape_sbx_writes() -> None:
    good = image_defaults_from({"Labels": {"io.sbx.snapshot.files": "/.sbx-snapshot/0123456789ab"}})
    assert good.snapshot_files == "/.sbx-snapshot/0123456789ab"
    for bad in ("/", "/etc", "/.sbx-snapshot/../etc", "/.sbx-snapshot/0123456789ab/.."):
        assert (
            image_defaults_from({"Labels": {"io.sbx.snapshot.files": bad}}).snapshot_files is None
        )


def test_durations() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("0s") == 0
    assert parse_duration("90") == 90
    with pytest.raises(ConfigError, match="12h, 7d"):
        parse_duration("soon")


class FakeCatalog:
    def __init__(self, images: list[EngineImage], in_use: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.images = images
        self.in_use = in_use
        self.removed: list[str] = []

    async def list_images(self) -> list[EngineImage]:
        return list(self.images)

    async def remove_image(self, ref: str, *, what: str) -> None:
        if ref in self.in_use:
            raise EngineError(f"{what}: image is being used by a running container")
        self.removed.append(ref)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def catalog() -> FakeCatalog:
    return FakeCatalog(
        [
            EngineImage(
                id="sha256:" + "a" * 64,
                tags=("sbx-base:latest", "sbx-base:0123456789ab"),
                labels={"io.sbx.image": "base", "io.sbx.recipe-hash": "0123456789ab" + "c" * 52},
                created=at(0),
            ),
            EngineImage(
                id="sha256:" + "b" * 64,
                tags=("sbx-snapshot:old",),
                labels={
                    "io.sbx.snapshot": "old",
                    "io.sbx.snapshot.created": "1000",
                    "io.sbx.snapshot.parent": "sbx-code-runner",
                    "io.sbx.snapshot.session": "s1",
                },
            ),
            EngineImage(
                id="sha256:" + "c" * 64,
                tags=("sbx-snapshot:new",),
                labels={"io.sbx.snapshot": "new", "io.sbx.snapshot.created": "9000"},
            ),
            EngineImage(
                id="sha256:" + "d" * 64,
                tags=("other-snapshot:x",),
                labels={"io.sbx.snapshot": "x", "io.sbx.snapshot.created": "1"},
            ),
            EngineImage(
                id="sha256:" + "e" * 64, labels={"io.sbx.snapshot.partial": "p"}, created=at(100)
            ),
            EngineImage(id="sha256:" + "f" * 64, tags=("myimg:1",), created=at(5)),
            EngineImage(  # built FROM sbx-code-runner: its labels, but the user's image
                id="sha256:" + "9" * 64,
                tags=("derived:2",),
                labels={"io.sbx.image": "code-runner"},
                created=at(6),
            ),
        ]
    )


async def test_the_catalog_names_each_kind_and_a_snapshots_parent() -> None:
    rows = await list_catalog(catalog())
    assert [(r.kind, r.image) for r in rows] == [
        ("sbx", "sbx-base:latest"),
        ("snapshot", "other-snapshot:x"),
        ("snapshot", "sbx-snapshot:new"),
        ("snapshot", "sbx-snapshot:old"),
        ("user", "derived:2"),
        ("user", "myimg:1"),
    ]
    old = next(r for r in rows if r.image == "sbx-snapshot:old")
    assert (old.parent, old.session) == ("sbx-code-runner", "s1")


async def test_rm_refuses_sbx_images_without_force_and_unknown_names() -> None:
    engine = catalog()
    assert await remove_images(
        engine, ["sbx-snapshot:old", "myimg:1", "derived:2"], force=False
    ) == ["sbx-snapshot:old", "myimg:1", "derived:2"]
    with pytest.raises(ConfigError, match="--force"):
        await remove_images(engine, ["sbx-base"], force=False)
    with pytest.raises(ImageNotFound):
        await remove_images(engine, ["nope:1"], force=False)
    assert await remove_images(engine, ["sbx-base"], force=True) == ["sbx-base"]


async def test_gc_removes_old_snapshots_of_its_repository_and_stale_partials_only() -> None:
    engine = catalog()
    removed = await collect_snapshots(
        engine, 3600, repository="sbx-snapshot", partial_after=600, now=10_000
    )
    assert removed == ["sbx-snapshot:old", "sha256:" + "e" * 64]
    engine = catalog()
    assert await collect_snapshots(
        engine, 0, repository="sbx-snapshot", partial_after=10**9, now=10_000
    ) == ["sbx-snapshot:old", "sbx-snapshot:new"]  # the partial is younger than the deadline


async def test_gc_keeps_a_snapshot_a_fork_still_uses() -> None:
    engine = FakeCatalog(catalog().images, in_use={"sbx-snapshot:old"})
    removed = await collect_snapshots(
        engine, 0, repository="sbx-snapshot", partial_after=10**9, now=10_000
    )
    assert removed == ["sbx-snapshot:new"]


def test_files_past_the_limit_stop_the_archive_with_the_path(
    tmp_path: Path, snapshot_files: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = tmp_path / "w"
    mount.mkdir()
    with open(mount / "sparse", "wb") as f:
        f.truncate(10 << 30)  # ten gigabytes of nothing: a tar would hold every byte
    with pytest.raises(snapshot_files.TooLarge):
        snapshot_files.archive("p/x", [str(mount)], io.BytesIO(), 1 << 20)
    stdout = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            code = snapshot_files.main(["archive", str(1 << 20), "p/x", str(mount)])
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)
    assert code == 3
    report = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert report == {"too_large": str(mount / "sparse"), "limit": 1 << 20}


async def test_a_backend_that_keeps_no_images_says_snapshots_need_docker(
    orch: Orchestrator,
) -> None:
    async with orch.session() as s:
        with pytest.raises(SnapshotError, match=r"engine\.backend = 'docker'"):
            await s.snapshot()
        assert (await s.exec("echo still here")).stdout == b"still here\n"
