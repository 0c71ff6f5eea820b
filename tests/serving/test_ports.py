"""Ports for listeners started later are chosen where the kernel hands out none (outside the ephemeral range), and
never twice by one process: a port chosen by port 0 was now and then taken before HAProxy bound it."""

from __future__ import annotations

import socket

from serving import ports


def test_ports_are_outside_the_ephemeral_range_free_and_never_handed_out_twice() -> None:
    low, high = ports.ephemeral_range()
    seen: set[int] = set()
    for _ in range(50):
        port = ports.free_port()
        assert not low <= port <= high and port >= ports.LOWEST
        assert port not in seen
        seen.add(port)
    base = ports.free_range(64)
    block = set(range(base, base + 64))
    assert not block & seen and not any(low <= p <= high for p in block)
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", ports.free_port()))  # free on every interface, as HAProxy binds it


def test_a_kernel_that_hands_out_almost_every_port_still_gets_one(monkeypatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    assert 1024 <= ports.free_port() <= 65535
