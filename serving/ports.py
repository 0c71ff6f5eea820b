"""Free TCP ports for what a server starts later, chosen outside the kernel's ephemeral port range.

A port found free now is bound later: HAProxy's listeners start a minute or more after ``sovereign serve`` sets
their ports, once Ray and the engines are up. In between, every process that connects anywhere or binds port 0
is handed a port from the ephemeral range, so a port picked from that range (port 0's own choice) is now and
then taken by the time it is bound (seen: HAProxy's stats listener failing with "Address already in use", and
the server with it). Ports outside the range are handed out by no one but whoever asks for them by number.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20000  # below: registered services, and Ray's worker ports under `ray start` (10002-19999 by default)
_EPHEMERAL_DEFAULT = (32768, 60999)  # Linux's default, when /proc cannot say


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (``net.ipv4.ip_local_port_range``), both ends included."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return _EPHEMERAL_DEFAULT
    return low, high


def _spans(width: int) -> list[tuple[int, int]]:
    """Where a block of ``width`` ports may start: below the ephemeral range, or above it."""
    low, high = ephemeral_range()
    spans = [(lo, hi) for lo, hi in ((LOWEST, low - width), (high + 1, 65536 - width)) if hi > lo]
    return spans or [(1024, 65536 - width)]  # a kernel that hands out nearly every port: take any


_handed_out: set[int] = set()  # by this process: not bound yet, so the bind test below cannot see them


def free_range(width: int = 1) -> int:
    """A base port whose ``width`` consecutive ports are all free now on every interface, outside the kernel's
    ephemeral range, and not handed out before by this process."""
    spans = _spans(width)
    for _ in range(200):
        lo, hi = random.choice(spans)
        base = random.randrange(lo, hi)
        if not _handed_out.isdisjoint(range(base, base + width)):
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + width):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("0.0.0.0", port))
            _handed_out.update(range(base, base + width))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no free range of {width} ports outside the ephemeral range")


def free_port() -> int:
    """One port that is free now, outside the kernel's ephemeral range."""
    return free_range(1)
