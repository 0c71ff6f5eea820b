"""Connections and memory of the router replica behind HAProxy, by how clients read a stream. A probe, not the
suite.

    python -m benchmarks.probes.replica_connections --json OUT

Starts the gateway in front of the fake upstream (as ``bench overhead``) and sends rounds of streamed requests,
one at a time, each on a keep-alive connection: clients that read to the end of the body (the openai SDK's async
client, ``bench serve``), clients that stop reading at ``[DONE]`` and close the response (the SDK's synchronous
client), and clients that hang up after the first event. After each round: HAProxy's counters for the replica
(``connect``: new connections; ``reuse``: requests on a pooled one) and the replica's anonymous resident memory.
A new connection per request costs the router a TCP set-up and a uvicorn protocol; a connection HAProxy resets was
held by uvicorn until its keep-alive timer ran out (serving/http_edge.py). Figures: benchmarks/RESULTS.md,
"Gateway overhead".
"""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.compare import machine_info
from benchmarks.overhead import FAKE_KEY_ENV, upstream_backend
from benchmarks.probes import probe_parser, report
from benchmarks.targets import Target, start_fake, start_gateway

INGRESS_TITLE = "ServeReplica:sovereign:ingress"
BODY = {"model": "default", "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "hi " * 60}]}


def _read_to_end(response: httpx.Response) -> None:
    for _ in response.iter_bytes():
        pass


def _stop_at_done(response: httpx.Response) -> None:
    for line in response.iter_lines():
        if line == "data: [DONE]":
            return


def _hang_up_after_first_event(response: httpx.Response) -> None:
    for line in response.iter_lines():
        if line.startswith("data:"):
            return


CLIENTS: dict[str, Callable[[httpx.Response], None]] = {
    "read_to_end": _read_to_end,
    "stop_at_done": _stop_at_done,
    "hang_up_after_first_event": _hang_up_after_first_event,
}


def haproxy_counters(admin_socket: str) -> dict[str, int]:
    """HAProxy's ``connect`` (new connections) and ``reuse`` counters for the router replica, from its admin
    socket (``show stat``)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(admin_socket)
        sock.sendall(b"show stat\n")
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    replica = next(r for r in rows if r["svname"].startswith("SERVE_REPLICA_"))
    return {"connect": int(replica["connect"]), "reuse": int(replica["reuse"])}


def _find(predicate: Callable[[psutil.Process], bool]) -> psutil.Process:
    for proc in psutil.process_iter():
        try:
            if predicate(proc):
                return proc
        except psutil.Error:
            continue
    raise RuntimeError("process not found")


def _rss_anon_kib(proc: psutil.Process) -> int:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("RssAnon:")))


def _round(gateway: Target, read: Callable[[httpx.Response], None], requests: int) -> None:
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as client:
        for _ in range(requests):
            with client.stream("POST", "/chat/completions", json=BODY) as response:
                response.raise_for_status()
                read(response)


def run(rounds: int = 3, requests: int = 500) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="replica-connections-"))
    fake = start_fake(base / "fake")
    try:
        gateway = start_gateway(
            base / "gateway",
            [upstream_backend(fake.base_url)],
            ["upstream"],
            300,
            env={FAKE_KEY_ENV: "fake-upstream-key"},
        )
        try:
            haproxy = _find(lambda p: p.name() == "haproxy")
            admin = haproxy.cmdline()[haproxy.cmdline().index("-x") + 1]
            version = subprocess.run([haproxy.cmdline()[0], "-v"], capture_output=True, text=True).stdout
            replica = _find(lambda p: INGRESS_TITLE in " ".join(p.cmdline()))
            _round(gateway, _read_to_end, 100)  # warm-up
            result: dict[str, Any] = {}
            for name, read in CLIENTS.items():
                rows = []
                for _ in range(rounds):
                    counters, rss = haproxy_counters(admin), _rss_anon_kib(replica)
                    _round(gateway, read, requests)
                    after = haproxy_counters(admin)
                    rows.append(
                        {
                            "requests": requests,
                            "new_connections": after["connect"] - counters["connect"],
                            "reused_connections": after["reuse"] - counters["reuse"],
                            "replica_rss_anon_growth_kib": _rss_anon_kib(replica) - rss,
                        }
                    )
                result[name] = rows
        finally:
            gateway.stop()
    finally:
        fake.stop()
    return {"clients": result, "haproxy": version.splitlines()[0], "machine": machine_info()}


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500, help="per round")
    args = parser.parse_args(argv)
    return report(run(args.rounds, args.requests), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
