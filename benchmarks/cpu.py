"""Where a run's CPU time went, by process: on a machine the engine shares with everything else, throughput follows
the share of the cores the engine gets, so a comparison is only explained once the rest is counted.

``snapshot()`` reads every process's user + system CPU seconds (psutil); ``spent(before, after)`` groups what each
process used in between by what it is: Ray workers by their process title less the task they run at the moment
(``ray::ServeReplica:sovereign:ingress``, ``ray::ServeController``), vLLM's processes by theirs
(``VLLM::EngineCore``), the kernel's worker threads together, the load generator (this process) by that name,
anything else by its executable name. A process is the same process by its pid and start time, whatever its
title says at either end.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict

import psutil

from serving.placement import process_title

LOAD_GENERATOR = "load generator (this process)"


_RAY_METHOD = re.compile(r"\.[A-Za-z_]\w*$")  # "ray::ServeController.listen_for_change": the task it runs now


def _group(pid: int, name: str, cmdline: list[str]) -> str:
    """A name that stays the same for the life of the process (titles change with what a worker is doing)."""
    if pid == os.getpid():
        return LOAD_GENERATOR
    title = process_title(cmdline, name)
    if title.startswith("ray::"):
        return _RAY_METHOD.sub("", title)
    if title.startswith("VLLM::"):
        return title
    if name.startswith("kworker/"):
        return "kernel workers"
    return name


Snapshot = dict[tuple[int, float], tuple[str, float]]


def snapshot() -> Snapshot:
    """{(pid, start time): (group, CPU seconds so far)} for every process that can be read."""
    seen: Snapshot = {}
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times", "create_time"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        group = _group(proc.pid, proc.info["name"] or "?", proc.info["cmdline"] or [])
        seen[proc.pid, proc.info["create_time"] or 0.0] = (group, times.user + times.system)
    return seen


def spent(before: Snapshot, after: Snapshot, min_share: float = 0.01) -> dict[str, float]:
    """CPU seconds per group between two snapshots, largest first; groups under ``min_share`` of the total are
    summed as ``other``. A process that started in between counts from zero; one that ended is not seen."""
    totals: defaultdict[str, float] = defaultdict(float)
    for key, (group, seconds) in after.items():
        start = before.get(key)
        used = seconds - (start[1] if start is not None else 0.0)
        if used > 0:
            totals[group] += used
    whole = sum(totals.values())
    result: dict[str, float] = {}
    other = 0.0
    for group, seconds in sorted(totals.items(), key=lambda item: item[1], reverse=True):
        if whole and seconds / whole < min_share:
            other += seconds
        else:
            result[group] = round(seconds, 2)
    if other:
        result["other"] = round(other, 2)
    return result


def stolen_seconds() -> float:
    """CPU time the hypervisor gave to other guests, all CPUs together, since boot (0 where not reported): a run
    that lost much of it was measured on a noisy host, whatever this machine's own processes did."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))
