"""A small single-threaded event loop over ``selectors``, with timers.

The guest multiplexes many processes, pipes and timers; one thread and a
selector keep it simple and fast (no locks, no thread hand-offs on the hot
path) and need nothing outside the standard library.  Callbacks must not
block: file operations are quick and size-capped, everything else is
non-blocking I/O.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Callable, Dict, List, Optional, Tuple

    Callback = Callable[[], None]


class Timer:
    """A handle to a pending ``call_later``; ``cancel()`` is idempotent."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback: Optional[Callback] = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = None


class Loop:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._timers: List[Tuple[float, int, Timer]] = []
        self._compact_at = 1024
        self._seq = itertools.count()
        self._readers: Dict[int, Callback] = {}
        self._writers: Dict[int, Callback] = {}
        self.running = False

    # -- file descriptors -------------------------------------------------

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def _update(self, fd: int) -> None:
        mask = 0
        if fd in self._readers:
            mask |= selectors.EVENT_READ
        if fd in self._writers:
            mask |= selectors.EVENT_WRITE
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            key = None
        if key is None:
            if mask:
                self._selector.register(fd, mask)
        elif mask:
            if key.events != mask:
                self._selector.modify(fd, mask)
        else:
            self._selector.unregister(fd)

    # -- timers -----------------------------------------------------------

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        if len(self._timers) >= self._compact_at:
            # Cancelled timers stay in the heap until they reach its top; every
            # command leaves one (its timeout), so sweep them out now and then.
            self._timers = [entry for entry in self._timers if not entry[2].cancelled]
            heapq.heapify(self._timers)
            self._compact_at = max(1024, 2 * len(self._timers))
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    @property
    def pending_timers(self) -> int:
        return len(self._timers)

    # -- running ----------------------------------------------------------

    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        self.running = True
        while self.running:
            timeout = None
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            for key, events in self._selector.select(timeout):
                fd = key.fd
                if events & selectors.EVENT_READ:
                    reader = self._readers.get(fd)
                    if reader is not None:
                        reader()
                if events & selectors.EVENT_WRITE:
                    writer = self._writers.get(fd)
                    if writer is not None:
                        writer()
                if not self.running:
                    return
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, timer = heapq.heappop(self._timers)
                callback = timer.callback
                if callback is not None and not timer.cancelled:
                    timer.cancel()
                    callback()
                if not self.running:
                    return
