"""The guest's folder walks are bounded by entries looked at, not only by files found.

They run in the guest's loop: user code that makes a million empty directories
(a second's work) must not stall every call of its session while one is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def files(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("files")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of the test's own (the guest's code lives beside it in ``tmp_path``)."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def scans(files: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders the guest's code opens, in order."""
    opened: list[str] = []
    real = os.scandir

    def counting(path: str) -> Iterator[os.DirEntry[str]]:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(files.os, "scandir", counting)
    return opened


def test_a_walk_stops_after_its_entries_even_when_none_is_a_file(
    files: ModuleType, scans: list[str], folder: Path
) -> None:
    for i in range(50):
        (folder / f"d{i}").mkdir()
    (folder / "d7" / "f").write_text("x")
    assert [path for path, _ in files.walk_tree(str(folder))] == [str(folder / "d7" / "f")]
    assert len(scans) == 51  # unbounded: every folder opened
    scans.clear()
    assert list(files.walk_tree(str(folder), 10)) == []
    assert scans == [str(folder)]  # ten entries of the top folder, and no further


def test_a_directory_is_read_only_as_far_as_it_can_be_shown(
    files: ModuleType, folder: Path
) -> None:
    for name in ("e", "b", "d", "a", "c"):
        (folder / name).write_text("")
    items, more = files.read_directory(str(folder), 10)
    assert [e.name for e in items] == ["a", "b", "c", "d", "e"] and not more
    items, more = files.read_directory(str(folder), 3)
    assert len(items) == 3 and more
    assert [e.name for e in items] == sorted(e.name for e in items)


def test_a_listing_of_a_huge_folder_says_it_was_truncated(
    files: ModuleType, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_LIST_ENTRIES", 20)
    for i in range(30):
        (folder / f"f{i:02d}").write_text("")
    service = files.FileService([str(folder)], 1 << 20)
    listed = service.list({"path": str(folder)})
    assert listed["truncated"] is True
    assert len(listed["entries"]) == 20


def test_a_listing_stops_before_its_answer_outgrows_one_frame(
    files: ModuleType, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setattr(files, "MAX_LIST_BYTES", 4096)
    for i in range(100):
        (folder / (f"{i:03d}-" + "n" * 100)).write_text("")
    listed = files.FileService([str(folder)], 1 << 20).list({"path": str(folder)})
    assert listed["truncated"] is True
    assert 0 < len(listed["entries"]) < 100
    assert len(json.dumps(listed["entries"])) <= 4096
