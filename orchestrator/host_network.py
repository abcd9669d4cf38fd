"""This host's own IPv4 addresses: what a networked sandbox must never reach.

A sandbox's traffic to the host's addresses arrives at the host's own
services (the sbx API among them) rather than leaving for the internet, so
each is blocked in the sandbox alongside its gateway.  Read from
``/proc/net/fib_trie`` (the kernel's local routes), standard library only.

Must not: fail a session for want of the list (an empty one still leaves the
gateway and the private ranges blocked).
"""

from __future__ import annotations

import functools

__all__ = ["local_ipv4_addresses"]


@functools.cache
def local_ipv4_addresses() -> tuple[str, ...]:
    """Addresses this host answers on (loopback aside), e.g. ``("172.17.0.1", "192.0.2.2")``."""
    found: set[str] = set()
    try:
        with open("/proc/net/fib_trie", encoding="ascii") as f:
            previous = ""
            for line in f:
                if "/32 host LOCAL" in line and previous:
                    found.add(previous)
                words = line.split()
                previous = words[-1] if len(words) >= 2 and words[0] in ("|--", "+--") else ""
    except OSError:
        return ()
    return tuple(sorted(a for a in found if not a.startswith("127.")))
