"""Servers started as processes of their own, waited for and stopped: the one way the benchmarks, the probes and the
test suite run `sovereign serve`, vLLM's server, stock Ray Serve LLM and the fakes.

Why processes: a load generator must not share an interpreter (or a GIL) with what it measures, a test must drive
the server as an operator would, and a server that fails to start must say why (its log tail) rather than hang.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    """A server did not start or answer; the message carries the tail of its log."""


def start_process(
    cmd: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    *,
    cwd: Path = REPO_ROOT,
    own_session: bool = False,
    hog: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group (so the whole tree can be signalled), output to ``log_path``; ``env``
    is added to this process's environment; with ``hog``, a CPU hog in the same group that spins while that file
    names CPUs (benchmarks/hog.py).

    By default the process stays in the caller's session. With the kernel's autogroup on, each session is scheduled
    as one group; a server in a session of its own starved the load generator or the test's client (any other
    session) of CPU for seconds at a time on a 2-vCPU host while it streamed (run Q in benchmarks/RESULTS.md), so
    what was measured was partly the client. In one session, nice decides. ``own_session``: as a server started from
    another terminal is (benchmarks/probes)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if hog is not None:
        cmd = [sys.executable, "-m", "benchmarks.hog", str(hog), "--", *cmd]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=own_session,
            process_group=None if own_session else 0,
        )


def log_tail(path: Path | None, chars: int = 4000) -> str:
    """The end of what a server printed, and of the newest `sovereign serve` log beside it (``var/log/serve-*.log``
    in its working folder: Ray's and the replicas' output is there)."""
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace")[-chars:]
    logs = sorted((path.parent / "var" / "log").glob("serve-*.log"), key=lambda p: p.stat().st_mtime)
    if logs:
        text += f"\n--- {logs[-1]}:\n" + logs[-1].read_text(errors="replace")[-chars:]
    return text


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes] | None,
    log_path: Path | None,
    timeout_s: float,
    ready_file: Path | None = None,
) -> None:
    """Poll ``url`` until it answers 200 (after ``ready_file`` exists, when given); raise ``ServerError`` with the log
    tail if the process exits first or time runs out. The process is left running either way."""
    deadline = time.monotonic() + timeout_s

    def check() -> None:
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"{url}: server exited with {proc.returncode}\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise ServerError(f"{url}: not ready after {timeout_s:.0f} s\n{log_tail(log_path)}")

    while ready_file is not None and not ready_file.exists():
        check()
        time.sleep(1.0)
    with httpx.Client(timeout=5.0) as client:
        while True:
            check()
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(1.0)


def stop_process(
    proc: subprocess.Popen[bytes], grace_s: float = 60.0, *, whole_group: bool = True, kill_stragglers: bool = True
) -> int | None:
    """SIGINT (Ctrl-C) and up to ``grace_s`` for a clean stop, then SIGTERM and SIGKILL to the process group.
    Returns the exit status, or None if the process did not go even after SIGKILL (one stuck in the kernel).

    ``whole_group``: SIGINT to the process group, as a terminal's Ctrl-C sends it; otherwise to the leader alone.
    ``kill_stragglers``: SIGKILL whatever is left in the group after the leader exited (engine workers). The test
    suite turns it off: that nothing outlives the server is one of the things it checks."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 15.0), (signal.SIGKILL, 30.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGINT and not whole_group:
                proc.send_signal(sig)
            else:
                os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
    if kill_stragglers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode
