"""The guest's text documents and undo history, as pure functions (no sandbox needed)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture
def textdoc(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("textdoc")


@pytest.mark.parametrize(
    ("raw", "style", "lines"),
    [
        (b"", "lf", 0),
        (b"a", "lf", 1),
        (b"a\n", "lf", 1),
        (b"a\nb", "lf", 2),
        (b"a\r\nb\r\n", "crlf", 2),
        (b"a\r\nb\n", "mixed", 2),
        (b"caf\xe9\n", "lf", 1),
    ],
)
def test_documents_round_trip_every_byte(
    textdoc: ModuleType, raw: bytes, style: str, lines: int
) -> None:
    doc = textdoc.Document(raw, "/f")
    assert doc.style == style
    assert textdoc.count_lines(doc.work) == lines
    assert doc.encode(doc.work) == raw


def test_binary_is_refused(textdoc: ModuleType) -> None:
    with pytest.raises(Exception, match="NUL bytes"):
        textdoc.Document(b"\x00abc", "/f")
    with pytest.raises(Exception, match="not UTF-8 text"):
        textdoc.Document(bytes(range(128, 256)) * 4, "/f")


def test_matches_overlap_and_snippets_clamp(textdoc: ModuleType) -> None:
    assert textdoc.find_all("aaaa", "aa", 10) == [0, 1, 2]
    text = "".join(f"{n}\n" for n in range(1, 21))
    start, shown = textdoc.snippet(text, 2, 2)
    assert start == 1
    assert shown == b"1\n2\n3\n4\n5\n6"
    start, shown = textdoc.snippet(text, 20, 20)
    assert (start, shown) == (16, b"16\n17\n18\n19\n20")


def test_history_is_bounded_in_depth_and_bytes(textdoc: ModuleType) -> None:
    history = textdoc.History()
    for n in range(5):
        history.push("/a", b"a" * 10 + bytes([n]), (), 3, 1000)
    assert history.depth("/a") == 3
    assert history.pop("/a")[0] == b"a" * 10 + b"\x04"
    history.push("/b", b"b" * 600, (), 3, 1000)
    history.push("/c", b"c" * 600, (), 3, 1000)  # over 1000 bytes: the oldest files give way
    assert history.depth("/c") == 1
    assert history.bytes <= 1000
    assert "/a" in history.dropped
    history.push("/d", b"d" * 5000, (), 3, 1000)  # one snapshot alone over the cap: not kept
    assert history.depth("/d") == 0
    assert history.bytes <= 1000
