"""Where a run's CPU time went, by process: on a machine the engine shares with everything else, throughput follows
the share of the cores the engine gets, so a comparison is only explained once the rest is counted.

``snapshot()`` reads every process's user + system CPU seconds (psutil); ``spent(before, after)`` groups what each
process used in between by what it is: Ray workers by their process title (``ray::ServeReplica:sovereign:ingress``,
``ray::ServeController``), vLLM's processes by theirs (``VLLM::EngineCore``), the load generator (this process)
by that name, anything else by its executable name.
"""

from __future__ import annotations

import os
from collections import Counter

import psutil

LOAD_GENERATOR = "load generator (this process)"


def _group(pid: int, name: str, cmdline: list[str]) -> str:
    if pid == os.getpid():
        return LOAD_GENERATOR
    title = cmdline[0] if cmdline else ""
    if title.startswith(("ray::", "VLLM::")):
        return title.split(" ")[0]
    return name


def snapshot() -> dict[int, tuple[str, float]]:
    """{pid: (group, CPU seconds so far)} for every process that can be read."""
    seen: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        seen[proc.pid] = (_group(proc.pid, proc.info["name"] or "?", proc.info["cmdline"] or []),
                          times.user + times.system)
    return seen


def spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
          min_share: float = 0.01) -> dict[str, float]:
    """CPU seconds per group between two snapshots, largest first; groups under ``min_share`` of the total are
    summed as ``other``. A process that started in between counts from zero; one that ended is not seen."""
    totals: Counter[str] = Counter()
    for pid, (group, seconds) in after.items():
        start = before.get(pid)
        used = seconds - (start[1] if start is not None and start[0] == group else 0.0)
        if used > 0:
            totals[group] += used
    whole = sum(totals.values())
    result: dict[str, float] = {}
    other = 0.0
    for group, seconds in totals.most_common():
        if whole and seconds / whole < min_share:
            other += seconds
        else:
            result[group] = round(seconds, 2)
    if other:
        result["other"] = round(other, 2)
    return result
