"""Finding the processes and files of one running app (its Ray workers, its Ray session's logs) by ancestry.

Other people may run Ray on the same machine, so "the ingress replica" or "the latest Ray session" must be the
ones started by *this* app's ``sovereign serve`` process: its descendants, and the log files they hold open.
"""

from __future__ import annotations

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
