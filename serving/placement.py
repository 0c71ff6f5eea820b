"""CPU engines: keep the rest of the server off the cores vLLM computes on.

vLLM's CPU backend binds its worker's OpenMP threads to cores (``VLLM_CPU_OMP_THREADS_BIND=auto``: one logical CPU
per physical core of a NUMA node, less the "reserved" ones it leaves for everything else), but nothing keeps
everything else off the worker's cores. Plain vLLM has one light front-end process; this server also runs Ray's
GCS and raylet, Serve's controller, the router and engine replicas, HAProxy. The kernel puts some of them on the
worker's cores, and every time one runs there the worker stalls (Ray runs its workers at nice 15, and the
engine's processes are Ray workers' children, so GCS, raylet and the like win every contest for that core). Keeping
them apart brings the gateway's throughput on a small CPU host up to plain vLLM's (benchmarks/RESULTS.md, "Runs I
to K and the A/B run: CPU placement", with ``bench compare --targets vllm,gateway_unplaced,gateway``).

So under ``sovereign serve`` with CPU engines only (one host; ``server.isolate_cpu_engines``, on by default):

* the server records the CPUs it may use in ``SOVEREIGN_HOST_CPUS`` before Ray starts (every Ray process inherits
  it), and runs a ``Placer`` that, every few seconds, moves each of its descendants except vLLM's workers onto
  the CPUs no worker is bound to;
* an engine replica, before it starts its engine, spreads itself back over all of those CPUs
  (``spread_for_engine``): it may have been started by a raylet already moved, and GNU OpenMP in the worker it
  spawns would drop every core not in the worker's initial mask, leaving it unbound. The ``Placer`` leaves an
  engine replica's processes alone until its worker is bound, so it cannot move one mid-start.

Contention. The placer puts the whole request path (router, engine front-ends, vLLM's schedulers, HAProxy) on the
leftover CPUs beside Ray's daemons. At Ray's default nice 15 for its workers, anything else busy there at nice 0
starves the request path (``bench compare --cpu-hog``). So ``sovereign serve`` starts Ray's workers at nice 0
(``RAY_worker_niceness``) and the placer puts vLLM's workers, the engine's compute, at nice 15
(``SOVEREIGN_ENGINE_NICE``; only ever raising a thread's nice value, which needs no privilege). Everything at nice 0
keeps pace too, but with the kernel's autogroup on (each session one scheduling group) the busy workers then starve
other sessions on the host of CPU for seconds at a time. The figures are in benchmarks/RESULTS.md (runs M to T).

Nothing happens with a GPU engine in the configuration (its processes would be squeezed onto the cores a CPU
engine leaves), under ``serve deploy`` or KubeRay (no ``SOVEREIGN_HOST_CPUS``), or where vLLM binds nothing (no
worker narrower than the host, e.g. ``VLLM_CPU_OMP_THREADS_BIND=nobind``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

import psutil

log = logging.getLogger("sovereign.placement")

HOST_CPUS_ENV = "SOVEREIGN_HOST_CPUS"
ENGINE_NICE_ENV = "SOVEREIGN_ENGINE_NICE"
ENGINE_NICE = 15  # Ray's own default for its workers: the engine's compute yields to everything else
WORKER_TITLE = "VLLM::Worker"  # vLLM's title for its worker processes ("VLLM::Worker_TP1" with tensor parallelism)


def format_cpus(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def parse_cpus(text: str) -> frozenset[int]:
    """The CPUs in ``format_cpus``'s form; raises ``ValueError`` for anything else."""
    return frozenset(int(part) for part in text.split(",") if part.strip())


def host_cpus() -> frozenset[int] | None:
    """The CPUs ``sovereign serve`` recorded for this server, or None when it recorded none (or garbage)."""
    try:
        cpus = parse_cpus(os.environ.get(HOST_CPUS_ENV, ""))
    except ValueError:
        return None
    return cpus or None


def reserved_cpus(host: frozenset[int], workers: Iterable[frozenset[int]]) -> frozenset[int]:
    """The CPUs for everything but the engines' workers: the host's, less those any worker is bound to. Empty (do
    nothing) when no worker is bound to fewer CPUs than the host has, or the workers are bound to all of them."""
    bound = frozenset().union(*(w for w in workers if w < host))
    rest = host - bound
    return rest if bound and rest else frozenset()


def process_title(cmdline: list[str], name: str) -> str:
    """What Ray and vLLM set as a process's title (``ray::ServeController``, ``VLLM::Worker``), else its name."""
    return cmdline[0].split(" ")[0] if cmdline else name


def _title(proc: psutil.Process) -> str:
    return process_title(proc.cmdline(), proc.name())


def worker_cpus(procs: Iterable[psutil.Process]) -> dict[int, frozenset[int]]:
    """{pid: the CPUs it is bound to} for vLLM's workers among ``procs``."""
    bound: dict[int, frozenset[int]] = {}
    for proc in procs:
        try:
            if _title(proc).startswith(WORKER_TITLE):
                bound[proc.pid] = frozenset(proc.cpu_affinity())
        except psutil.Error:
            continue  # it ended meanwhile
    return bound


def _set_threads(proc: psutil.Process, cpus: frozenset[int]) -> bool:
    """Move every thread of ``proc`` onto ``cpus`` (a thread inherits its creator's mask, so threads matter, not
    only the process). Returns whether anything changed."""
    changed = False
    for thread in proc.threads():
        try:
            if os.sched_getaffinity(thread.id) != cpus:
                os.sched_setaffinity(thread.id, cpus)
                changed = True
        except OSError:  # the thread ended meanwhile
            continue
    return changed


def engine_nice() -> int | None:
    """The niceness for vLLM's CPU workers (``SOVEREIGN_ENGINE_NICE``: a number, clamped to -20..19, default 15), or
    None to leave theirs (``off`` or empty). Anything else is a mistake: said, and the default kept, since leaving
    the workers at nice 0 starves the rest of the host (benchmarks/RESULTS.md, runs Q to S)."""
    text = os.environ.get(ENGINE_NICE_ENV, str(ENGINE_NICE)).strip()
    if text.lower() in ("", "off"):
        return None
    try:
        return max(-20, min(19, int(text)))
    except ValueError:
        log.warning("%s=%r is not a number or 'off'; using %d", ENGINE_NICE_ENV, text, ENGINE_NICE)
        return ENGINE_NICE


def _lower_priority(proc: psutil.Process, nice: int) -> bool:
    """Raise every thread of ``proc`` to at least ``nice`` (on Linux niceness is per thread, and OpenMP's threads
    exist before the placer first sees a worker). Only ever raises it: lowering it needs privilege. Returns whether
    anything changed."""
    changed = False
    for thread in proc.threads():
        try:
            if os.getpriority(os.PRIO_PROCESS, thread.id) < nice:
                os.setpriority(os.PRIO_PROCESS, thread.id, nice)
                changed = True
        except OSError:  # the thread ended meanwhile
            continue
    return changed


def spread_for_engine() -> None:
    """In an engine replica before its engine starts: all of this process's threads onto the host's CPUs, so the
    engine's worker starts with the whole host in its mask and vLLM can bind it where it chooses."""
    host = host_cpus()
    if host is None:
        return
    try:
        _set_threads(psutil.Process(), host)
    except (psutil.Error, OSError) as exc:
        log.warning("could not spread the engine replica over CPUs %s: %s", format_cpus(host), type(exc).__name__)


def place(
    root: psutil.Process, host: frozenset[int], engine_title: str, worker_nice: int | None = None
) -> frozenset[int]:
    """One pass: every process under ``root`` (and ``root``) except vLLM workers onto the reserved CPUs, leaving
    alone the processes of any engine replica (title starting with ``engine_title``) whose worker is not bound yet;
    with ``worker_nice``, every vLLM worker's threads at least that nice. Returns the reserved CPUs (empty: nothing
    was done)."""
    procs = [root, *root.children(recursive=True)]
    titles: dict[int, str] = {}
    for proc in procs:
        try:
            titles[proc.pid] = _title(proc)
        except psutil.Error:
            continue
    workers = {pid for pid, title in titles.items() if title.startswith(WORKER_TITLE)}
    bound = worker_cpus(proc for proc in procs if proc.pid in workers)
    reserved = reserved_cpus(host, bound.values())
    if worker_nice is not None:  # bound or not: the server set Ray's workers at nice 0 (serving/serve.py)
        for proc in procs:
            if proc.pid in workers:
                try:
                    if _lower_priority(proc, worker_nice):
                        log.debug("%s (%d) now at nice %d", titles[proc.pid], proc.pid, worker_nice)
                except (psutil.Error, OSError):
                    continue
    if not reserved:
        return reserved
    starting: set[int] = set()  # engine replicas (and what they spawned) whose worker is not bound yet
    for proc in procs:
        if titles.get(proc.pid, "").startswith(engine_title):
            try:
                tree = {proc.pid, *(c.pid for c in proc.children(recursive=True))}
            except psutil.Error:
                continue
            if not any(pid in bound and bound[pid] < host for pid in tree):
                starting |= tree
    for proc in procs:
        if proc.pid in workers or proc.pid in starting or proc.pid not in titles:
            continue
        try:
            # An idle Ray worker that became an engine replica since this pass began is left to the next pass:
            # the replica spreads itself only after checking its weights, well after it takes its title.
            if _title(proc).startswith(engine_title) and not titles[proc.pid].startswith(engine_title):
                continue
            if _set_threads(proc, reserved):
                log.debug("moved %s (%d) onto CPUs %s", titles[proc.pid], proc.pid, format_cpus(reserved))
        except (psutil.Error, OSError):
            continue  # it ended meanwhile
    return reserved


class Placer:
    """Runs ``place`` over the descendants of ``root`` (default: this process) every ``interval_s`` seconds in a
    daemon thread (replicas restart, Ray starts workers; most inherit a moved parent's mask, the rest are caught on
    the next pass)."""

    def __init__(
        self,
        host: frozenset[int],
        engine_title: str,
        interval_s: float = 5.0,
        worker_nice: int | None = None,
        root: int | None = None,
    ) -> None:
        self.root = root
        self.host = host
        self.engine_title = engine_title
        self.worker_nice = worker_nice
        self.interval_s = interval_s
        self.reserved: frozenset[int] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-placer", daemon=True)

    def start(self) -> Placer:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.root) if self.root else psutil.Process()
        except psutil.Error:  # the supervisor is gone: the server is stopping
            root = psutil.Process()
        while not self._stop.is_set():
            try:
                reserved = place(root, self.host, self.engine_title, self.worker_nice)
            except Exception as exc:  # never take the server down over a placement
                log.warning("CPU placement pass failed: %s", type(exc).__name__)
            else:
                if reserved and reserved != self.reserved:
                    log.info("CPU engines: everything but vLLM's workers now runs on CPUs %s", format_cpus(reserved))
                self.reserved = reserved
            self._stop.wait(self.interval_s)
