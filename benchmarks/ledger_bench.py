"""The cost of one call to the shared ledger actor (routing/budgets.py: RayLedger), as a router replica pays it.

``python -m benchmarks.ledger_bench [N]``: a local Ray instance, one actor standing in for a router replica, N calls
each of ``reserve`` (a budget) and ``draw`` (a request-rate lease) after 50 to warm up; the in-process ledger for
comparison. Prints p50 and p99 in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

from routing.budgets import InProcessLedger, Limits, RayLedger, Scope
from serving.thirdparty import init_ray_on_loopback

SCOPES = [Scope("caller:bench", Limits(requests_per_minute=10**9, tokens_per_minute=10**12))]


async def timed_calls(ledger: Any, n: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"reserve": [], "draw": []}
    for name, call in (
        ("reserve", lambda: ledger.reserve(SCOPES, 100)),
        ("draw", lambda: ledger.draw("bench", 10**9, 10)),
    ):
        for _ in range(n):
            began = time.perf_counter()
            await call()
            found[name].append((time.perf_counter() - began) * 1000)
    return found


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    return f"p50 {statistics.median(ordered):.3f} ms, p99 {ordered[int(len(ordered) * 0.99)]:.3f} ms"


def main(argv: list[str]) -> int:
    import ray

    n = int(argv[0]) if argv else 1000
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init_ray_on_loopback(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        class Replica:
            async def run(self, n: int) -> dict[str, list[float]]:
                ledger = RayLedger(name="ledger-bench")
                await timed_calls(ledger, 50)
                return await timed_calls(ledger, n)

        replica: Any = ray.remote(num_cpus=0)(Replica).remote()  # Ray types its methods as plain functions
        remote: dict[str, list[float]] = ray.get(replica.run.remote(n))
    finally:
        ray.shutdown()
    local = asyncio.run(timed_calls(InProcessLedger(), n))
    for name in ("reserve", "draw"):
        print(f"RayLedger.{name} (an actor call): {summary(remote[name])}")
        print(f"InProcessLedger.{name}: {summary(local[name])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
