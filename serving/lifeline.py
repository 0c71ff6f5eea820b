"""What ties every process a server starts to the server's life, and clears what an earlier server left behind.

``sovereign serve`` is two processes (serving/supervise.py): the *supervisor*, the one the operator started, and
the *server* under it, which runs Ray, Serve and the engines. The pieces here:

* **A tag.** The supervisor puts ``SOVEREIGN_SERVER_ID=<random id>`` in the server's environment; every process
  below it inherits it (Ray's daemons and workers, vLLM's EngineCore and Worker, HAProxy), wherever it is
  re-parented to. ``tagged()`` finds them by it (``/proc/PID/environ``; this user's processes only), and by the
  server's private folder in their command line (HAProxy's configuration is in it).
* **Parent-death signals.** The server asks the kernel for SIGTERM when the supervisor dies (``die_with_parent``),
  and stops as it does on Ctrl-C; Ray asks for SIGKILL for its own daemons when the server dies.
* **A tag.** Every process the server starts inherits ``SOVEREIGN_SERVER_ID``: the supervisor finds orphans (an
  engine whose replica died, a HAProxy whose manager died) by it while the server runs, and everything left once
  the server has gone. (``become_subreaper`` is not used: collecting a large dead process tree spins for minutes in
  this project's VM kernel, and a subreaper collects what it adopted when it exits.)
* **A record** per running server under the state folder (``var/run/server-<id>.json``): its pids, private folder
  and port. A new start clears the processes of any server recorded there whose supervisor and server are both
  gone (``clear_stale``): what a SIGKILL of both left running.

With ``--address`` (an existing cluster) only this server's own processes carry the tag: the cluster's raylets,
which start the application's replicas there, were not started by it, so nothing of the cluster is ever swept.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict

SERVER_ID_ENV = "SOVEREIGN_SERVER_ID"
RUN_FOLDER = "run"
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """Linux ``prctl(option, value)``; False where it is not available (other systems, a seccomp refusal)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int) -> bool:
    """Ask the kernel for ``sig`` when this process's parent dies (False where it cannot). The parent may have died
    already, before the request: check ``os.getppid()`` after it."""
    return _prctl(_PR_SET_PDEATHSIG, sig)


def become_subreaper() -> bool:
    """Orphaned descendants of this process are re-parented to it (and must be reaped by it), not to init."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


class ServerRecord(BaseModel):
    """One running server, as the state folder records it (``var/run/server-<id>.json``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    server_id: str
    supervisor_pid: int
    supervisor_started: float  # the process's start time: a recycled pid is not mistaken for it
    server_pid: int | None = None
    server_started: float | None = None
    private: str  # the server's private folder (HAProxy's admin socket and configuration)
    host: str
    port: int
    # (pid, start time) of every process under the supervisor when it last looked, and of those seen before that still
    # run (an orphan whose parent died between two looks): Ray's two agents wipe their environment (the tag with it)
    # when they set their process title, and they outlive a killed raylet for a minute
    members: list[tuple[int, float]] = []


def run_folder(state: Path) -> Path:
    return state / RUN_FOLDER


def record_path(state: Path, server_id: str) -> Path:
    return run_folder(state) / f"server-{server_id}.json"


def write_record(state: Path, record: ServerRecord) -> Path:
    """Write atomically (a half-written record would read as garbage at the next start)."""
    path = record_path(state, record.server_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json())
    tmp.replace(path)
    return path


def read_records(state: Path) -> list[tuple[Path, ServerRecord | None]]:
    """Every record in the state folder; None for one that cannot be read (it is removed as stale)."""
    found: list[tuple[Path, ServerRecord | None]] = []
    for path in sorted(run_folder(state).glob("server-*.json")):
        try:
            found.append((path, ServerRecord.model_validate(json.loads(path.read_text()))))
        except (OSError, ValueError):
            found.append((path, None))
    return found


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (psutil's create time), or None when there is no such live process."""
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except psutil.Error:
        return None


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether the process recorded as (``pid``, ``started``) still runs, and is that process, not a later one."""
    if pid is None or started is None:
        return False
    now = started_at(pid)
    return now is not None and abs(now - started) < 0.5


def title(proc: psutil.Process) -> str:
    """A short name for messages: the title Ray and vLLM set (``ray::ServeController``, ``VLLM::Worker``), a
    binary's name (``raylet``), or the script a Python process runs (``python log_monitor.py``)."""
    try:
        cmdline = proc.cmdline() or [proc.name()]
    except psutil.Error:
        return "?"
    first = cmdline[0].split(" ")[0]
    if not first.startswith(os.sep):
        return first[:60]
    name = os.path.basename(first)
    script = next((os.path.basename(a) for a in cmdline[1:] if a.endswith(".py")), None)
    if script is None and "-m" in cmdline[1:-1]:
        script = cmdline[cmdline.index("-m") + 1]
    return f"{name} {script}" if name.startswith("python") and script else name


def tagged(server_id: str, private: str | None = None, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """This user's live processes that belong to server ``server_id``: its tag in their environment, or its private
    folder in their command line. Zombies are left out (they hold nothing but a pid; their parent reaps them)."""
    skip = {os.getpid(), *exclude}
    inside = private.rstrip(os.sep) + os.sep if private else None  # files in it, never a folder merely named alike
    found = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or _exiting(proc.pid):
                continue
            if (inside and inside in " ".join(proc.cmdline())) or proc.environ().get(SERVER_ID_ENV) == server_id:
                found.append(proc)
        except psutil.Error:  # ended meanwhile, or another user's
            continue
    return found


def descends(proc: psutil.Process, ancestors: set[int], max_depth: int = 64) -> bool:
    """Whether ``proc`` is (still) under one of ``ancestors``: its parent chain, read now, reaches one. A process
    whose parent died was handed to init (or a subreaper), so its chain no longer does. One that ended meanwhile
    counts as under them (nothing to kill)."""
    pid = proc.pid
    try:
        for _ in range(max_depth):
            pid = psutil.Process(pid).ppid()
            if pid in ancestors:
                return True
            if pid <= 1:
                return False
    except psutil.Error:
        return True
    return False


_PF_EXITING = 0x4  # the kernel's flag for a task that is tearing itself down


def _exiting(pid: int) -> bool:
    """Whether ``pid`` is already exiting (``PF_EXITING`` in ``/proc/PID/stat``). Such a process needs no kill, and
    reading its command line or environment waits for its memory to be torn down, which has been seen to take
    minutes here for a large process (a vLLM worker, or the server itself)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return bool(int(fields[6]) & _PF_EXITING)
    except (OSError, IndexError, ValueError):
        return False


def recorded(members: Iterable[tuple[int, float]]) -> list[psutil.Process]:
    """The processes of a record's ``members`` that still run (the same processes: same pid and start time)."""
    found = []
    for pid, started in members:
        if pid != os.getpid() and is_alive(pid, started):
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
    return found


def kill_all(
    find: Callable[[], list[psutil.Process]], timeout_s: float, reap: Callable[[], object] | None = None
) -> list[str]:
    """SIGKILL whatever ``find()`` returns, again and again (a dying process may have spawned another) until it
    returns nothing or ``timeout_s`` passes. ``reap`` collects this process's own dead children meanwhile. Returns
    "title (pid)" for each process killed."""
    killed: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        procs = find()
        if not procs or time.monotonic() > deadline:
            return list(killed.values())
        for proc in procs:
            killed.setdefault(proc.pid, f"{title(proc)} ({proc.pid})")
            with contextlib.suppress(psutil.Error):
                proc.kill()
        gone_by = time.monotonic() + 1.0
        while time.monotonic() < gone_by:
            if reap is not None:
                reap()
            if not any(p.is_running() and _status(p) != psutil.STATUS_ZOMBIE for p in procs):
                break
            time.sleep(0.05)


def _status(proc: psutil.Process) -> str:
    try:
        return proc.status()
    except psutil.Error:
        return psutil.STATUS_DEAD


def remove_folder(path: str | Path, timeout_s: float = 3.0, helpers: set[int] | None = None) -> bool:
    """Remove ``path`` in a helper process, waiting at most ``timeout_s``. A separate process because removing the
    folder has been seen to spin in the kernel (``shrink_dcache_parent``) right after the processes that held files
    in it were killed; a process stuck there cannot finish exiting, so it must not be the one whose exit matters.
    Returns whether the folder is gone; ``helpers`` collects the helper's pid (it is not an orphan to kill)."""
    path = Path(path)
    if not path.exists():
        return True
    helper = subprocess.Popen(
        [sys.executable, "-m", "serving.lifeline", "--remove", str(path), str(timeout_s)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    if helpers is not None:
        helpers.add(helper.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        helper.wait(timeout=timeout_s)
    return not path.exists()


def remove_tree(path: str | Path, timeout_s: float, between: Callable[[], object] | None = None) -> bool:
    """Remove ``path`` and all in it, again until it is gone or ``timeout_s`` passes, calling ``between`` before
    each new pass. One pass is not enough: a process still dying when it listed a folder (HAProxy and Serve's proxy
    keep per-node files in the private folder) can add an entry after the listing, and the folder then survives
    with its parents. Returns whether ``path`` is gone."""
    path = Path(path)
    deadline = time.monotonic() + timeout_s
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return True
        if time.monotonic() > deadline:
            return False
        if between is not None:
            between()
        time.sleep(0.05)


def _record_processes(record: ServerRecord) -> list[psutil.Process]:
    """What a server recorded as its own and still runs: its tagged processes and its recorded members."""
    return tagged(record.server_id, record.private) + recorded(record.members)


def clear_stale(state: Path, reap: Callable[[], object] | None = None, helpers: set[int] | None = None) -> list[str]:
    """Clear what servers recorded in ``state`` left behind when both their supervisor and their server are gone:
    their tagged processes, private folder and record. Servers still running are left alone. Returns one line per
    server cleared, saying what was killed."""
    said = []
    for path, record in read_records(state):
        if record is not None and (
            is_alive(record.supervisor_pid, record.supervisor_started)
            or is_alive(record.server_pid, record.server_started)
        ):
            continue
        if record is not None:
            killed = kill_all(functools.partial(_record_processes, record), timeout_s=10, reap=reap)
            remove_folder(record.private, helpers=helpers)
            said.append(
                f"cleared an earlier server of this folder (pid {record.supervisor_pid}, port "
                f"{record.port}): " + (f"killed {', '.join(killed)}" if killed else "nothing left running")
            )
        with contextlib.suppress(OSError):
            path.unlink()
    return said


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``. The bind is without SO_REUSEPORT: a listener that has it (as
    HAProxy's do) would otherwise let a second server share the port with it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def listeners(pids: Iterable[int]) -> dict[int, list[int]]:
    """{pid: [ports it listens on]} for those of ``pids`` that still listen on any TCP port."""
    wanted = set(pids)
    found: dict[int, list[int]] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in wanted and conn.laddr:
            found.setdefault(conn.pid, []).append(conn.laddr.port)
    return found


def forward(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


class SweepHelper:
    """A process that kills what server ``server_id`` left running (its tagged processes and recorded ``members``,
    except ``exclude``) and removes its private folder, when asked.

    A helper because this work reads /proc for every process and removes a folder whose users just died: on this
    project's VM kernel both have been seen to stall in the kernel (``shrink_dcache_parent``) right after a large
    tree died, and a process stalled there cannot exit. Started with the supervisor, before anything of the server
    exists: starting a process after the tree died has stalled too (the supervisor was seen blocked in ``vfork`` for
    its helper a minute after the signal), so the supervisor's stop starts none; it writes the request to the
    helper's stdin and reads the answer with a bound. The helper exits at the end of its stdin, so it goes when
    the supervisor does, and it is never collected here (see ``Supervisor.reap``): it passes to init."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.lifeline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self.proc.returncode = 0  # never collected here: keeps Popen from doing so later

    @property
    def pid(self) -> int:
        return self.proc.pid

    def sweep(
        self,
        server_id: str,
        private: str,
        members: Iterable[tuple[int, float]],
        exclude: Iterable[int],
        timeout_s: float,
    ) -> tuple[list[str], bool] | None:
        """Returns (what was killed, whether the folder is gone), or None if the helper did not answer within
        ``timeout_s``. Once only: the helper exits after its answer."""
        spec = json.dumps(
            {
                "server_id": server_id,
                "private": private,
                "members": list(members),
                "exclude": list(exclude),
                "timeout_s": max(0.2, timeout_s - 0.5),
            }
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        answer, deadline = b"", time.monotonic() + timeout_s
        with contextlib.suppress(OSError):  # a helper that died: no answer
            self.proc.stdin.write(spec.encode() + b"\n")  # far below a pipe's buffer: never blocks
            self.proc.stdin.close()
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                chunk = os.read(self.proc.stdout.fileno(), 65536) if ready else b""
                if not chunk:
                    break
                answer += chunk
        self.close()
        try:
            result = json.loads(answer)
            return list(result["killed"]), bool(result["removed"])
        except (ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        """Let the helper go without a request (the end of its stdin)."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _sweep_main() -> int:
    """The ``SweepHelper`` process: waits for one request on stdin, prints {"killed": [...], "removed": bool} as one
    JSON line; exits at once at the end of its stdin. With ``--remove PATH SECONDS``, ``remove_folder``'s helper."""
    if sys.argv[1:2] == ["--remove"]:
        return 0 if remove_tree(sys.argv[2], timeout_s=float(sys.argv[3])) else 1
    spec_json = sys.stdin.readline()
    if not spec_json.strip():
        return 0
    spec = json.loads(spec_json)
    exclude = {int(pid) for pid in spec["exclude"]}
    members = [(int(pid), float(started)) for pid, started in spec["members"]]

    def left() -> list[psutil.Process]:  # by tag, by folder, and as recorded (Ray's agents clear their tag)
        found = {p.pid: p for p in [*tagged(spec["server_id"], spec["private"], exclude), *recorded(members)]}
        return [p for pid, p in found.items() if pid not in exclude and _status(p) != psutil.STATUS_ZOMBIE]

    timeout_s = float(spec["timeout_s"])
    deadline = time.monotonic() + timeout_s
    killed = kill_all(left, timeout_s=timeout_s)
    # The folder has what is left of the bound, and 0.4 s at least (within the reply's margin).
    removed = remove_tree(
        spec["private"],
        timeout_s=max(0.4, deadline - time.monotonic()),
        between=lambda: killed.extend(k for k in kill_all(left, timeout_s=0.2) if k not in killed),
    )
    try:
        print(json.dumps({"killed": killed, "removed": removed}), flush=True)
    except BrokenPipeError:  # the supervisor stopped waiting for the answer and has gone: nothing to report to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at the interpreter's exit
    return 0


if __name__ == "__main__":
    sys.exit(_sweep_main())
