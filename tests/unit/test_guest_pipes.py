"""The guest's stdin writer: streamed input moves in wide pieces, under its window.

Bulk input (a transfer's data, ``sbx run -i``) used to move 64 KiB per wake-up
of the guest's loop, the guest's own CPU the limit of a write; the streamed
writer widens its pipe and writes what the pipe takes at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from types import ModuleType

import pytest


class _Loop:
    """Records the writer callbacks the writer asks for (no real loop needed)."""

    def __init__(self) -> None:
        self.writers: dict[int, Callable[[], None]] = {}

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        self.writers[fd] = callback

    def remove_writer(self, fd: int) -> None:
        self.writers.pop(fd, None)


@pytest.fixture
def pipes(guest_module: Callable[[str], ModuleType]) -> ModuleType:
    return guest_module("pipes")


@pytest.mark.parametrize("streamed", [True, False])
def test_a_streamed_writer_fills_a_wide_pipe_in_one_write(
    pipes: ModuleType, streamed: bool
) -> None:
    r, w = os.pipe()
    try:
        loop = _Loop()
        granted: list[int] = []
        if streamed:
            writer = pipes.PipeWriter(loop, w, b"", streamed=True, grant=granted.append)
            writer.feed(b"x" * (1 << 20), eof=False)
        else:
            pipes.PipeWriter(loop, w, b"x" * (1 << 20))
        writable = loop.writers[w]
        writable()  # one wake-up of the loop
        os.set_blocking(r, False)
        moved = len(os.read(r, 2 << 20))
        if streamed:
            assert moved == 1 << 20  # the whole megabyte in one wake-up
            assert sum(granted) == 1 << 20  # and granted back to the host
            assert w not in loop.writers  # nothing left to write: no wake-ups asked for
        else:
            assert moved == 64 * 1024  # a request's own input keeps the default pipe
    finally:
        os.close(r)
        with contextlib.suppress(OSError):  # the writer may have closed it
            os.close(w)
