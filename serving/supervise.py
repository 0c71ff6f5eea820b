"""The process the operator starts as ``sovereign serve``: it runs the server under it, and outlives it.

Why a second process. The server (serving/serve.py) starts Ray's daemons (GCS, raylet), which would land in its
process group: a signal to the group from a terminal or a process supervisor would reach them at the same moment
as the server, which would then wait for a GCS already gone, fail its drain, and leave HAProxy and the vLLM
engines running. So:

* the server runs in a process group of its own (same session, so the kernel's autogroup still schedules it with
  the terminal's other programs), and a signal to this process or to its group reaches only this process, which
  passes it on to the server once: the server then drains with Ray intact;
* the server gets SIGTERM from the kernel if this process dies (``lifeline.die_with_parent``), so a SIGKILL here
  still ends in a clean stop;
* an orphan (an engine whose replica died, a HAProxy whose manager died) is found by the server's tag in its
  environment and killed within ``ORPHAN_CHECK_S``; this process collects no child (``Supervisor.reap`` says why);
  once the server has exited, whatever carries its tag or
  names its private folder is killed, the folder removed, and the record under ``var/run/`` deleted;
* what the server and Ray print goes to a log file under ``var/log/``; the terminal shows the steps
  (serving/progress.py), the URL, the key and how to call it.

Stopping takes at most ``server.drain_timeout_s`` + ``STOP_LIMIT_S`` from the signal to this process's exit: the
server gives itself ``drain_timeout_s`` + serving.serve.STOP_MARGIN_S and says what it cut short; past
``drain_timeout_s`` + ``FORCE_AFTER_S`` it is killed here. A second Ctrl-C kills it at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from serving import lifeline
from serving.config import Settings
from serving.progress import Event, Terminal, parse

STOP_LIMIT_S = 10.0
FORCE_AFTER_S = 7.0  # the server ends its stop by drain + serve.STOP_MARGIN_S + serve.SWEEP_S (6.5 s)
EXIT_GRACE_S = 3.0  # the server said it is exiting: how long that may take before it is no longer waited for
ORPHAN_CHECK_S = 2.0
TICK_S = 0.25
LOG_TAIL_LINES = 15
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _private_folder() -> str:
    """Mode 0700: only this user reaches what is inside. Under /tmp (as Ray's own default) rather than a possibly
    long $TMPDIR: UNIX socket paths go inside it."""
    return tempfile.mkdtemp(prefix="sov-", dir="/tmp" if os.path.isdir("/tmp") else None)


class Supervisor:
    def __init__(
        self,
        argv: list[str],
        settings: Settings,
        state: Path,
        terminal: Terminal,
        command: list[str] | None = None,
        joins_cluster: bool = False,
    ) -> None:
        """``command``: the server to run (default: ``sovereign serve`` itself, as the server); the supervisor
        appends ``--supervisor PID --private DIR --channel FD`` to it. ``joins_cluster``: the server deploys onto an
        existing Ray cluster, whose Serve proxy (perhaps serving other applications already) holds the port."""
        self.joins_cluster = joins_cluster
        self.command = command or [sys.executable, "-m", "serving.cli", "serve", *argv]
        self.settings = settings
        self.state = state
        self.terminal = terminal
        self.server_id = secrets.token_hex(8)
        self.pending: list[int] = []
        self.exited: dict[int, int] = {}  # pid -> wait status, for every child reaped here
        self.helpers: set[int] = set()
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_at: float | None = None
        self.forced = False
        self.reported_exit: int | None = None
        self.reported_at = 0.0
        self.log_path: Path | None = None
        self.record: lifeline.ServerRecord | None = None
        self.sweeper: lifeline.SweepHelper | None = None  # started before the server: see lifeline.SweepHelper
        self._buffer = b""

    # -- children -------------------------------------------------------------------------------------------------

    def reap(self) -> None:
        """Notice the server's exit, without collecting it. Collecting a dead child (``waitpid``) runs the kernel's
        release of its task, which on this project's VM kernel has spun for minutes in ``shrink_dcache_parent``
        (invalidating the dead task's /proc entries) after a large process tree died: the collector cannot exit
        meanwhile. So nothing is collected here: ``waitid(..., WNOWAIT)`` reads the server's status and leaves it a
        zombie, which passes to init when this process exits."""
        if self.proc is None or self.proc.pid in self.exited:
            return
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None:
            return
        if info.si_code == os.CLD_EXITED:
            self.exited[self.proc.pid] = (info.si_status & 0xFF) << 8
        else:  # killed or dumped: the signal, as a wait status
            self.exited[self.proc.pid] = info.si_status & 0x7F

    def _server_status(self) -> int | None:
        return self.exited.get(self.proc.pid) if self.proc is not None else None

    def orphans(self) -> list[psutil.Process]:
        """This server's processes (by its tag) that are no longer under the server: their parent in it died.
        (Not found by adopting them as subreaper: whoever collects a large dead process tree can spin for minutes
        in this project's VM kernel, and a subreaper that exits with zombies collects them in its own exit.)"""
        if self.proc is None:
            return []
        roots = {self.proc.pid, *self.helpers}
        # Ancestry is read after the scan, per process: a snapshot of the server's tree taken before it would call
        # every process started in between an orphan (a compiler the engine's kernel build had just spawned).
        return [proc for proc in lifeline.tagged(self.server_id, exclude=roots) if not lifeline.descends(proc, roots)]

    def _kill_orphans(self) -> None:
        killed = lifeline.kill_all(self.orphans, timeout_s=1.0, reap=self.reap)
        if killed:
            # While the server stops, Ray's daemons go before their workers: expected, so only logged.
            self._log_or_note(
                f"killed {', '.join(killed)}: its parent in the server had died", note=self.stop_at is None
            )

    def _record_members(self) -> None:
        """Keep the record's list of this tree's processes current (what a next start kills if this one and the
        server are both killed before they can clean up)."""
        if self.record is None:
            return
        # A member that still runs stays, even once it is no longer under this process: the server may have died
        # since this loop last looked, and its daemons and Ray's agents (which clear the server's tag from their
        # environment) are then orphans that only this record names for the sweep.
        members = {pid: started for pid, started in self.record.members if lifeline.is_alive(pid, started)}
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    members[proc.pid] = proc.create_time()
        if set(members) != {pid for pid, _ in self.record.members}:
            self.record = self.record.model_copy(update={"members": sorted(members.items())})
            with contextlib.suppress(OSError):
                lifeline.write_record(self.state, self.record)

    def _log_or_note(self, text: str, note: bool) -> None:
        if note:
            self.terminal.note(text)
        if self.log_path is not None:
            with contextlib.suppress(OSError), self.log_path.open("a") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} sovereign serve (supervisor): {text}\n")

    # -- the server's reports -------------------------------------------------------------------------------------

    def _read_channel(self, fd: int, wait_s: float) -> bool:
        """Show what the server reported; False once the pipe is closed."""
        try:
            readable, _, _ = select.select([fd], [], [], wait_s)
        except InterruptedError:
            return True
        if not readable:
            return True
        try:
            data = os.read(fd, 65536)
        except OSError:
            return False
        if not data:
            return False
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            event = parse(line)
            if event is not None:
                self._show(event)
        return True

    def _drain_channel(self, fd: int) -> None:
        """Show what the server reported before it went, without waiting for more. The write end can still be open
        here: the server said it is exiting and has not gone (a thread of it stalled in the kernel while exiting keeps
        its descriptors open), or something forked from it holds a copy. So read only while there is something to
        read."""
        with contextlib.suppress(OSError):
            while select.select([fd], [], [], 0)[0] and self._read_channel(fd, 0):
                pass

    def _show(self, event: Event) -> None:
        if event.kind == "exit":
            self.reported_exit, self.reported_at = event.code, time.monotonic()
            return
        self.terminal.show(event)

    # -- signals --------------------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def _handle_signals(self) -> None:
        while self.pending:
            signum = self.pending.pop(0)
            if self._server_status() is not None or self.proc is None:
                continue
            if self.stop_at is None:
                self.stop_at = time.monotonic()
                lifeline.forward(self.proc.pid, signal.SIGTERM)
            elif signum == signal.SIGINT and not self.forced:
                self.terminal.note("second Ctrl-C: stopping at once, requests in flight are cut off")
                self._force()

    def _force(self) -> None:
        self.forced = True
        if self.proc is not None:
            lifeline.forward(self.proc.pid, signal.SIGKILL)

    # -- the run --------------------------------------------------------------------------------------------------

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            return self._run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if self.sweeper is not None:
                self.sweeper.close()  # unused (a failed start): it exits at the end of its stdin
            self.terminal.close()

    def _run(self) -> int:
        for line in lifeline.clear_stale(self.state, reap=self.reap, helpers=self.helpers):
            self.terminal.note(line)
        host, port = self.settings.server.host, self.settings.server.port
        if not self.joins_cluster and lifeline.port_in_use(host, port):
            self.terminal.fail(
                f"port {port} on {host} is in use by another program; stop it, or choose another "
                "port (server.port, or SOVEREIGN_SERVER__PORT)"
            )
            return 2
        log_path = self.state / "log" / f"serve-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
        except OSError as exc:
            self.terminal.fail(f"cannot write the log under {self.state}: {exc}; start from a folder you can write to")
            return 2
        self.log_path = log_path
        private = _private_folder()
        me = psutil.Process()
        self.record = lifeline.ServerRecord(
            server_id=self.server_id,
            supervisor_pid=me.pid,
            supervisor_started=me.create_time(),
            private=private,
            host=host,
            port=port,
        )
        record = lifeline.write_record(self.state, self.record)  # before the server starts: it may die at once
        self.sweeper = lifeline.SweepHelper()
        self.helpers.add(self.sweeper.pid)
        self.terminal.say(f"sovereign serve: starting (log: {log_path})")
        read_fd, write_fd = os.pipe()
        command = [*self.command, "--supervisor", str(os.getpid()), "--private", private, "--channel", str(write_fd)]
        with log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                process_group=0,
                env={**os.environ, lifeline.SERVER_ID_ENV: self.server_id},
            )
        os.close(write_fd)
        self.record = self.record.model_copy(
            update={"server_pid": self.proc.pid, "server_started": lifeline.started_at(self.proc.pid) or 0.0}
        )
        lifeline.write_record(self.state, self.record)
        stuck = self._wait(self.proc, read_fd)
        self._drain_channel(read_fd)
        os.close(read_fd)
        return self._finish(private, record, log_path, stuck)

    def _wait(self, proc: subprocess.Popen[bytes], read_fd: int) -> bool:
        """Until the server has exited (or was killed, or said it is exiting and then did not). Returns whether it
        is stuck: it said it is exiting, or was killed, and still has not gone."""
        drain = self.settings.server.drain_timeout_s
        open_pipe, next_orphan_check = True, time.monotonic() + ORPHAN_CHECK_S
        forced_at: float | None = None
        while True:
            if open_pipe:
                open_pipe = self._read_channel(read_fd, TICK_S)
            else:
                time.sleep(TICK_S)
            self.terminal.tick()
            self._handle_signals()
            self.reap()
            if self._server_status() is not None:
                proc.returncode = 0  # noticed here; keeps Popen from collecting it (see reap)
                return False
            now = time.monotonic()
            if now >= next_orphan_check:
                self._kill_orphans()
                self._record_members()
                next_orphan_check = now + ORPHAN_CHECK_S
            if self.stop_at is not None and not self.forced and now > self.stop_at + drain + FORCE_AFTER_S:
                self.terminal.note(f"the server did not stop within {drain + FORCE_AFTER_S:.0f} s; killing it")
                self._force()
            if self.forced:
                forced_at = forced_at or now
                if now > forced_at + 1.0:
                    return True
            if self.reported_exit is not None and now > self.reported_at + EXIT_GRACE_S:
                return True

    def _finish(self, private: str, record: Path, log_path: Path, stuck: bool) -> int:
        status = self._server_status()
        server = self.proc.pid if self.proc else -1
        if stuck:
            self.terminal.note(
                f"the server process ({server}) has not exited after its shutdown (stuck in the "
                "kernel?); not waiting for it"
            )
        # After a stop signal, what is left of the bound (less a second for this process's own exit) is shared by
        # the sweep and the folder's removal; after a crash there is no bound but a few seconds is plenty. The folder
        # goes even when the server is stuck in the kernel's release of its task (the helper removes it, so a stall
        # there holds no one up). The record goes with the folder even then: such a process can be neither killed nor
        # waited for (reading its /proc entry stalls on this project's VM kernel too), the sweep has killed the rest,
        # and a record would only send the next start to read that process again.
        end = (
            time.monotonic() + 6.0
            if self.stop_at is None
            else self.stop_at + self.settings.server.drain_timeout_s + STOP_LIMIT_S - 1.0
        )
        members = self.record.members if self.record is not None else []
        assert self.sweeper is not None  # started before the server
        swept = self.sweeper.sweep(
            self.server_id,
            private,
            members,
            exclude=[server],
            timeout_s=max(0.7, end - time.monotonic()),
        )
        if swept is None:
            self.terminal.note(
                "the sweep of what the server left did not finish in time; the next start of this "
                "folder clears what is left"
            )
        else:
            killed, removed = swept
            if killed:
                self._log_or_note(
                    f"killed what the server left running: {', '.join(killed)}", note=self.stop_at is None
                )
            if not removed:
                self.terminal.note(f"{private} is left for the next start to remove")
            else:
                record.unlink(missing_ok=True)
        code = self._exit_code(status)
        if code != 0 and self.stop_at is None and not self.terminal.failed:  # no reason given: the log's end
            self._show_log_tail(log_path)
        if self.stop_at is not None:
            self.terminal.say(f"stopped in {time.monotonic() - self.stop_at:.1f} s (exit status {code})")
        return code

    def _exit_code(self, status: int | None) -> int:
        if status is None:
            return self.reported_exit if self.reported_exit is not None else 1
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        sig = os.WTERMSIG(status)
        if self.forced:
            return 1
        self.terminal.note(f"the server process was killed by {lifeline.SIGNAL_NAMES.get(sig, sig)}")
        return 128 + sig

    def _show_log_tail(self, log_path: Path) -> None:
        with contextlib.suppress(OSError):
            lines = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            self.terminal.say(f"last lines of {log_path}:\n" + "\n".join(f"  {line[:300]}" for line in lines))


def supervise(argv: list[str], settings: Settings, state: Path, address: str | None = None) -> int:
    """``address``: the server joins that existing Ray cluster (its Serve proxy's port is the cluster's business)."""
    return Supervisor(argv, settings, state, Terminal(), joins_cluster=address is not None).run()
