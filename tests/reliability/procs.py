"""Finding the processes and files of one running app (its Ray workers, its Ray session's logs) by ancestry.

Other people may run Ray on the same machine, so "the ingress replica" or "the latest Ray session" must be the
ones started by *this* app's ``sovereign serve`` process: its descendants, and the log files they hold open.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

INGRESS_TITLE = "ServeReplica:sovereign:ingress"


def engine_title(backend: str) -> str:
    return f"ServeReplica:sovereign:engine-{backend}"


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _title(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def find_replica(app_pid: int, title: str) -> psutil.Process | None:
    """The live Ray worker of ``app_pid`` whose process title names ``title`` (e.g. the ingress replica)."""
    for proc in descendants(app_pid):
        if title in _title(proc) and proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    return None


def ray_session_dir(app_pid: int) -> Path | None:
    """The Ray session folder (``.../session_<date>_<pid>``) whose logs this app's processes write."""
    for proc in descendants(app_pid):
        try:
            files = proc.open_files()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for f in files:
            path = Path(f.path)
            for parent in path.parents:
                if parent.name.startswith("session_") and (parent / "logs").is_dir():
                    return parent
    return None


def files_containing(root: Path, needles: list[bytes], max_bytes: int = 256 << 20) -> dict[str, list[str]]:
    """{needle: [files under ``root`` that contain it]}: regular files only, each read up to ``max_bytes``."""
    found: dict[str, list[str]] = {n.decode(errors="replace"): [] for n in needles}
    for path in root.rglob("*"):
        try:
            if not path.is_file() or path.is_symlink():
                continue
            with path.open("rb") as fh:
                data = fh.read(max_bytes)
        except OSError:
            continue
        for needle in needles:
            if needle in data:
                found[needle.decode(errors="replace")].append(str(path))
    return found


Placement = tuple[dict[int, frozenset[int]], dict[str, frozenset[int]]]


def cpu_placement(app_pid: int) -> Placement:
    """({worker pid: its CPUs} for vLLM's workers, {process title: the CPUs of all its threads} for the rest of
    the app's processes, the app's own included)."""
    workers: dict[int, frozenset[int]] = {}
    rest: dict[str, frozenset[int]] = {}
    for proc in [psutil.Process(app_pid), *descendants(app_pid)]:
        title = _title(proc)
        try:
            cpus = frozenset().union(*(os.sched_getaffinity(t.id) for t in proc.threads()))
        except (psutil.Error, OSError):
            continue
        if title.startswith("VLLM::Worker"):
            workers[proc.pid] = cpus
        elif title:
            rest[f"{title[:60]} ({proc.pid})"] = cpus
    return workers, rest


def assert_isolated(app_pid: int, host: frozenset[int], timeout_s: float = 30) -> Placement:
    """Wait until every process of the app but vLLM's workers is off the workers' CPUs (the placer passes every
    5 s), or fail saying which are not. Returns the placement."""
    deadline = time.monotonic() + timeout_s
    while True:
        workers, rest = cpu_placement(app_pid)
        bound = frozenset().union(*workers.values())
        offenders = {title: sorted(cpus) for title, cpus in rest.items() if cpus & bound}
        if workers and bound < host and not offenders:
            return workers, rest
        if time.monotonic() > deadline:
            assert workers, "no vLLM worker found"
            assert bound < host, f"vLLM bound its workers to no narrower set than the host: {workers}"
            raise AssertionError(f"on the engine cores {sorted(bound)}: {offenders}")
        time.sleep(1)
