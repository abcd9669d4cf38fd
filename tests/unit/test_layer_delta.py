"""A delta layer applied on top of the base rootfs gives exactly the derived rootfs.

``apply_layer`` below mimics how the Docker Engine unpacks a layer on an
overlay driver (``pkg/archive/diff.go``): whiteouts hide whole subtrees, a
non-directory replaces whatever was there, hard links resolve *inside the
layer only*, and a parent directory the layer does not carry is created with
mode 0600 — the trap that makes ``write_delta`` ship every ancestor.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.images.image_archive import docker_archive, image_config
from orchestrator.images.layer_delta import WHITEOUT_PREFIX, index_tar, plan_delta, write_delta
from orchestrator.images.layer_files import LayerFile, file_layer, normalize, write_tree_layer


@dataclass
class Entry:
    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_000_000
    link: str = ""
    xattrs: dict[str, str] = field(default_factory=dict)


def make_tar(path: Path, entries: list[Entry]) -> Path:
    """A tar shaped like mmdebstrap's: ``./``-prefixed names, pax headers, parents first."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo("./" + entry.name if entry.name else ".")
            info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs.items()}
            if entry.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, entry.mode or 0o755
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.link
                tar.addfile(info)
            elif entry.kind == "hardlink":
                info.type, info.mode, info.linkname = (
                    tarfile.LNKTYPE,
                    entry.mode or 0o644,
                    ("./" + entry.link),
                )
                tar.addfile(info)
            else:
                info.mode, info.size = entry.mode or 0o644, len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return path


Node = tuple[Any, ...]


def _node(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Node:
    xattrs = tuple(sorted((k, v) for k, v in member.pax_headers.items() if "xattr" in k))
    meta = (member.mode & 0o7777, member.uid, member.gid, int(member.mtime), xattrs)
    if member.isdir():
        return ("dir", *meta)
    if member.issym():
        return ("symlink", *meta, member.linkname)
    stream = tar.extractfile(member)
    assert stream is not None
    return ("file", *meta, stream.read())


def tree_of(path: Path) -> dict[str, Node]:
    """Path → node of a rootfs tar, hard links resolved to their target's node."""
    tree: dict[str, Node] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            name = normalize(member.name)
            if member.islnk():
                tree[name] = tree[normalize(member.linkname)]
            else:
                tree[name] = _node(tar, member)
    return tree


def _drop(tree: dict[str, Node], path: str) -> None:
    for name in [n for n in tree if n == path or n.startswith(path + "/")]:
        del tree[name]


def apply_layer(lower: dict[str, Node], layer: Path) -> dict[str, Node]:
    """The merged view after unpacking ``layer`` over ``lower`` the way the engine does."""
    tree = dict(lower)
    in_layer: set[str] = set()
    with tarfile.open(layer) as tar:
        for member in tar:
            name = normalize(member.name)
            parent, base = posixpath.split(name)
            if parent and parent not in in_layer:
                # UnpackLayer: MkdirAll(parent, 0600) in the layer's own directory.
                tree[parent] = ("dir", 0o600, 0, 0, 0, ())
                in_layer.add(parent)
            if base.startswith(WHITEOUT_PREFIX):
                _drop(tree, posixpath.join(parent, base[len(WHITEOUT_PREFIX) :]))
                continue
            existing = tree.get(name)
            if existing is not None and not (existing[0] == "dir" and member.isdir()):
                _drop(tree, name)
            if member.islnk():
                target = normalize(member.linkname)
                assert target in in_layer, f"hard link {name} -> {target} crosses layers"
                tree[name] = tree[target]
            else:
                tree[name] = _node(tar, member)
            in_layer.add(name)
    return tree


def d(name: str, **kw: Any) -> Entry:
    return Entry(name, kind="dir", **kw)


BASE = [
    d(""),
    d("etc"),
    Entry("etc/keep", data=b"same"),
    Entry("etc/changed", data=b"old"),
    Entry("etc/modeonly", data=b"m"),
    Entry("etc/mtimeonly", data=b"t"),
    Entry("etc/xattr", data=b"x"),
    d("opt"),
    d("opt/dir2file"),
    Entry("opt/dir2file/child", data=b"c"),
    Entry("opt/file2dir", data=b"f"),
    d("usr"),
    d("usr/bin"),
    Entry("usr/bin/tool", data=b"tool"),
    Entry("usr/bin/tool-link", kind="hardlink", link="usr/bin/tool"),
    d("usr/lib"),
    Entry("usr/lib/libx.so.1", data=b"v1"),
    Entry("usr/lib/libx-hard", kind="hardlink", link="usr/lib/libx.so.1"),
    d("usr/share"),
    Entry("usr/share/gone", data=b"bye"),
    d("usr/share/old"),
    Entry("usr/share/old/a", data=b"a"),
    d("usr/share/old/sub"),
    Entry("usr/share/old/sub/c", data=b"c"),
    Entry("link", kind="symlink", link="etc/keep"),
    d("var"),
    d("var/lib"),
]

DERIVED = [
    d(""),
    d("etc"),
    Entry("etc/keep", data=b"same"),
    Entry("etc/changed", data=b"new content"),
    Entry("etc/modeonly", data=b"m", mode=0o600),
    Entry("etc/mtimeonly", data=b"t", mtime=2_000_000),
    Entry("etc/xattr", data=b"x", xattrs={"user.k": "v"}),
    d("opt"),
    Entry("opt/dir2file", data=b"now a file"),
    d("opt/file2dir", mode=0o750, uid=1000, gid=1000),
    Entry("opt/file2dir/y", data=b"y"),
    d("usr"),
    d("usr/bin"),
    Entry("usr/bin/newlink", kind="hardlink", link="usr/bin/tool"),
    Entry("usr/bin/tool", data=b"tool"),
    Entry("usr/bin/tool-link", kind="hardlink", link="usr/bin/tool"),
    d("usr/lib"),
    Entry("usr/lib/libx.so.1", data=b"v2"),
    Entry("usr/lib/libx-hard", kind="hardlink", link="usr/lib/libx.so.1"),
    d("usr/share"),
    Entry("link", kind="symlink", link="etc/changed"),
    d("var"),
    d("var/lib"),
    d("var/lib/deep"),
    Entry("var/lib/deep/new", data=b"n" * 5000),
]


@pytest.fixture
def tars(tmp_path: Path) -> tuple[Path, Path]:
    # Order matters for hard links (target first), so sort the derived list like tar does,
    # but keep newlink after its target.
    derived = [e for e in DERIVED if e.name != "usr/bin/newlink"]
    derived.insert(
        derived.index(next(e for e in derived if e.name == "usr/bin/tool")) + 1,
        next(e for e in DERIVED if e.name == "usr/bin/newlink"),
    )
    return make_tar(tmp_path / "base.tar", BASE), make_tar(tmp_path / "derived.tar", derived)


def _delta(tmp_path: Path, base: Path, derived: Path) -> LayerFile:
    plan = plan_delta(index_tar(base), index_tar(derived))
    return write_delta(derived, plan, tmp_path / "delta.tar", whiteout_mtime=5)


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {normalize(m.name): m for m in tar}


def test_base_plus_delta_is_the_derived_rootfs(tmp_path: Path, tars: tuple[Path, Path]) -> None:
    base, derived = tars
    delta = _delta(tmp_path, base, derived)
    assert apply_layer(tree_of(base), delta.path) == tree_of(derived)


def test_delta_holds_only_changes_and_their_parents(
    tmp_path: Path, tars: tuple[Path, Path]
) -> None:
    base, derived = tars
    members = _members(_delta(tmp_path, base, derived).path)
    assert set(members) == {
        "etc",
        "etc/changed",
        "etc/modeonly",
        "etc/mtimeonly",
        "etc/xattr",
        "opt",
        "opt/dir2file",
        "opt/file2dir",
        "opt/file2dir/y",
        "usr",
        "usr/bin",
        "usr/bin/newlink",
        "usr/lib",
        "usr/lib/libx.so.1",
        "usr/lib/libx-hard",
        "usr/share",
        "usr/share/.wh.gone",
        "usr/share/.wh.old",
        "link",
        "var",
        "var/lib",
        "var/lib/deep",
        "var/lib/deep/new",
    }
    assert "etc/keep" not in members
    assert "usr/bin/tool" not in members


def test_removed_subtrees_get_one_whiteout_at_their_top(
    tmp_path: Path, tars: tuple[Path, Path]
) -> None:
    base, derived = tars
    plan = plan_delta(index_tar(base), index_tar(derived))
    # opt/dir2file/child is hidden by the file that replaces its directory.
    assert plan.whiteouts == ("usr/share/gone", "usr/share/old")


def test_hard_link_to_an_unchanged_file_becomes_a_regular_file(
    tmp_path: Path, tars: tuple[Path, Path]
) -> None:
    base, derived = tars
    delta = _delta(tmp_path, base, derived)
    members = _members(delta.path)
    assert members["usr/bin/newlink"].isreg()
    assert members["usr/bin/newlink"].size == len(b"tool")
    # Both names of a changed inode travel together and stay linked.
    assert members["usr/lib/libx-hard"].islnk()
    assert members["usr/lib/libx-hard"].linkname == "usr/lib/libx.so.1"


def test_symlink_and_metadata_changes_are_kept(tmp_path: Path, tars: tuple[Path, Path]) -> None:
    base, derived = tars
    members = _members(_delta(tmp_path, base, derived).path)
    assert members["link"].issym()
    assert members["link"].linkname == "etc/changed"
    assert members["etc/modeonly"].mode == 0o600
    assert members["etc/mtimeonly"].mtime == 2_000_000
    assert members["etc/xattr"].pax_headers.get("SCHILY.xattr.user.k") == "v"
    assert members["opt/file2dir"].isdir()
    assert (members["opt/file2dir"].uid, members["opt/file2dir"].mode) == (1000, 0o750)


def test_unchanged_parents_carry_their_own_metadata(
    tmp_path: Path, tars: tuple[Path, Path]
) -> None:
    base, derived = tars
    members = _members(_delta(tmp_path, base, derived).path)
    for parent in ("var", "var/lib", "usr", "usr/share"):
        assert members[parent].isdir()
        assert members[parent].mode == 0o755


def test_identical_rootfs_gives_an_empty_delta(tmp_path: Path) -> None:
    base = make_tar(tmp_path / "a.tar", BASE)
    same = make_tar(tmp_path / "b.tar", BASE)
    plan = plan_delta(index_tar(base), index_tar(same))
    assert plan.include == frozenset()
    assert plan.whiteouts == ()
    delta = write_delta(same, plan, tmp_path / "delta.tar")
    assert _members(delta.path) == {}


def test_delta_diff_id_is_the_sha256_of_the_file(tmp_path: Path, tars: tuple[Path, Path]) -> None:
    base, derived = tars
    delta = _delta(tmp_path, base, derived)
    assert delta.diff_id == "sha256:" + hashlib.sha256(delta.path.read_bytes()).hexdigest()
    assert delta.size == delta.path.stat().st_size
    assert file_layer(delta.path) == delta


def test_index_records_hard_links_as_their_target(tars: tuple[Path, Path]) -> None:
    base, _ = tars
    index = index_tar(base)
    assert index.entries["usr/bin/tool-link"] == index.entries["usr/bin/tool"]
    assert index.hardlinks == {
        "usr/bin/tool-link": "usr/bin/tool",
        "usr/lib/libx-hard": "usr/lib/libx.so.1",
    }
    assert index.entries[""].kind == "dir"


def test_tree_layer_is_deterministic_and_has_its_parents(tmp_path: Path) -> None:
    files = {"/opt/sbx/guest/main.py": b"print()\n", "/opt/sbx/guest/pkg/m.py": b"x = 1\n"}
    first = write_tree_layer(tmp_path / "one.tar", files, mtime=42)
    second = write_tree_layer(tmp_path / "two.tar", dict(reversed(files.items())), mtime=42)
    assert first.diff_id == second.diff_id
    members = _members(first.path)
    assert list(members) == [
        "opt",
        "opt/sbx",
        "opt/sbx/guest",
        "opt/sbx/guest/main.py",
        "opt/sbx/guest/pkg",
        "opt/sbx/guest/pkg/m.py",
    ]
    for name, member in members.items():
        assert (member.uid, member.gid, member.mtime) == (0, 0, 42)
        assert member.mode == (0o644 if name.endswith(".py") else 0o755)
    assert write_tree_layer(tmp_path / "three.tar", files, mtime=43).diff_id != first.diff_id


def test_docker_archive_is_a_loadable_docker_save_tar(tmp_path: Path) -> None:
    one = write_tree_layer(tmp_path / "1.tar", {"a": b"1"}, mtime=1)
    two = write_tree_layer(tmp_path / "2.tar", {"b": b"2"}, mtime=1)
    config = image_config(
        diff_ids=[one.diff_id, two.diff_id],
        history=["one", "two"],
        created="2024-01-01T00:00:00Z",
        architecture="amd64",
        user="1000:1000",
        working_dir="/workspace",
        entrypoint=["/usr/bin/python3", "-I", "/opt/sbx/guest/main.py"],
        env=["PATH=/usr/bin"],
        labels={"io.sbx.image": "x"},
    )
    stream = b"".join(docker_archive(config, [one, two], ["sbx-x:latest", "sbx-x:abc"]))
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        (item,) = manifest
        assert item["RepoTags"] == ["sbx-x:latest", "sbx-x:abc"]
        assert item["Config"] == hashlib.sha256(config).hexdigest() + ".json"
        assert tar.extractfile(item["Config"]).read() == config  # type: ignore[union-attr]
        layer_one = tar.extractfile(item["Layers"][0]).read()  # type: ignore[union-attr]
        assert layer_one == one.path.read_bytes()
    parsed = json.loads(config)
    assert parsed["rootfs"] == {"type": "layers", "diff_ids": [one.diff_id, two.diff_id]}
    assert parsed["config"]["Cmd"] is None
    assert parsed["config"]["User"] == "1000:1000"
    assert len(parsed["history"]) == 2


def test_docker_archive_can_leave_out_layers_the_engine_has(tmp_path: Path) -> None:
    one = write_tree_layer(tmp_path / "1.tar", {"a": b"1"}, mtime=1)
    two = write_tree_layer(tmp_path / "2.tar", {"b": b"2"}, mtime=1)
    config = b"{}"
    stream = b"".join(docker_archive(config, [one, two], ["t:1"], omit={one.diff_id}))
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        (item,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert tar.getmember(item["Layers"][0]).size == 0
        assert tar.extractfile(item["Layers"][1]).read() == two.path.read_bytes()  # type: ignore[union-attr]


def test_docker_archive_stops_when_asked(tmp_path: Path) -> None:
    big = tmp_path / "big.tar"
    big.write_bytes(b"\0" * (3 << 20))
    layer = LayerFile(path=big, diff_id="sha256:" + "0" * 64, size=3 << 20)
    stream = docker_archive(b"{}", [layer], ["t:1"], should_stop=lambda: True)
    with pytest.raises(InterruptedError):
        b"".join(stream)
