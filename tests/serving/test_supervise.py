"""The supervisor of ``sovereign serve`` (serving/supervise.py) and its process ties (serving/lifeline.py), over a
fake server (tests/support/fake_server.py): real processes, real signals, no Ray, a few seconds each.

The same behaviour on the real application (Ray, HAProxy, vLLM) is tested in tests/reliability/test_process_faults.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from serving import lifeline
from serving.ports import free_port
from serving.progress import Event, Reporter, Terminal, parse
from serving.serve import bounded

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Fake:
    proc: subprocess.Popen[bytes]
    state: Path
    out: Path

    def record(self, timeout_s: float = 30) -> dict:
        deadline = time.monotonic() + timeout_s
        path = self.state / "fake.json"
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())
            assert self.proc.poll() is None, self.output()
            time.sleep(0.05)
        raise AssertionError(f"the fake server did not start:\n{self.output()}")

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The supervisor's whole tree (the fake server and what it started)."""
        return [self.proc.pid, *(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _running(p)]


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[Fake] = []

    def _start(mode: str = "clean", drain: float = 2.0, port: int | None = None, state: Path | None = None) -> Fake:
        state = state or tmp_path / "var"
        state.mkdir(exist_ok=True)
        (state / "fake.json").unlink(missing_ok=True)
        out = tmp_path / f"out-{len(started)}.txt"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.fake_server",
                    "supervise",
                    str(state),
                    str(port or free_port()),
                    str(drain),
                    mode,
                ],
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        fake = Fake(proc, state, out)
        started.append(fake)
        return fake

    yield _start
    for fake in started:  # whatever a test left: a supervisor killed leaves its folder and record to the next start
        if fake.proc.poll() is None:
            fake.proc.kill()
            fake.proc.wait()
        lifeline.clear_stale(fake.state)
        with_record = fake.state / "fake.json"
        if with_record.exists():
            record = json.loads(with_record.read_text())
            for pid in [record["pid"], *record["children"]]:
                if _running(pid):
                    os.kill(pid, signal.SIGKILL)


def test_sigterm_to_the_group_stops_the_server_and_clears_what_it_left(start) -> None:
    fake = start()
    record = fake.record()
    family = fake.pids()
    private = Path(record["private"])
    assert private.is_dir() and oct(private.stat().st_mode & 0o777) == "0o700"
    assert len(lifeline.read_records(fake.state)) == 1
    os.killpg(fake.proc.pid, signal.SIGTERM)  # as a terminal or a process supervisor does
    assert fake.proc.wait(timeout=15) == 0, fake.output()
    assert json.loads((fake.state / "fake.json").read_text())["stopped_by"] == "SIGTERM"
    assert _wait_gone(family, 5) == [], "processes of the server's tree left running"
    assert not private.exists()
    assert lifeline.read_records(fake.state) == []
    out = fake.output()
    assert "✓ fake started" in out and "✓ drained" in out and "stopped in" in out
    assert "Deployment Options" not in out  # the server's own output goes to the log file
    logs = list((fake.state / "log").glob("serve-*.log"))
    assert len(logs) == 1 and "Deployment Options" in logs[0].read_text()


def test_a_channel_held_open_by_what_the_server_left_does_not_hold_the_supervisor(start) -> None:
    """The server has exited, but a process it started still holds the write end of the channel: the supervisor
    shows what was reported, sweeps what is left (that process too) and exits, rather than wait on the pipe."""
    fake = start("holds_channel")
    fake.record()  # started
    family = fake.pids()
    os.killpg(fake.proc.pid, signal.SIGTERM)
    assert fake.proc.wait(timeout=15) == 0, fake.output()
    assert _wait_gone(family, 5) == [], "processes of the server's tree left running"
    out = fake.output()
    assert "✓ drained" in out and "stopped in" in out


def test_a_server_that_does_not_stop_is_killed_within_the_bound(start) -> None:
    from serving.supervise import FORCE_AFTER_S, STOP_LIMIT_S

    drain = 1.0
    fake = start("stubborn", drain=drain)
    fake.record()
    family = fake.pids()
    began = time.monotonic()
    os.killpg(fake.proc.pid, signal.SIGTERM)
    rc = fake.proc.wait(timeout=drain + STOP_LIMIT_S + 5)
    took = time.monotonic() - began
    assert rc == 1
    assert drain + FORCE_AFTER_S - 0.5 <= took <= drain + STOP_LIMIT_S, took
    assert "did not stop within" in fake.output()
    assert _wait_gone(family, 5) == []


def test_second_ctrl_c_stops_at_once(start) -> None:
    fake = start("stubborn", drain=30.0)
    fake.record()
    os.killpg(fake.proc.pid, signal.SIGINT)
    time.sleep(0.5)
    os.killpg(fake.proc.pid, signal.SIGINT)
    assert fake.proc.wait(timeout=10) == 1
    assert "second Ctrl-C" in fake.output()


def test_a_crashed_server_leaves_nothing_running(start) -> None:
    fake = start()
    record = fake.record()
    family = fake.pids()
    os.kill(record["pid"], signal.SIGKILL)
    assert fake.proc.wait(timeout=15) == 128 + signal.SIGKILL
    assert _wait_gone(family, 5) == []
    assert "killed by SIGKILL" in fake.output()
    assert not Path(record["private"]).exists()


def test_the_server_stops_cleanly_when_the_supervisor_is_killed(start) -> None:
    fake = start()
    record = fake.record()
    os.kill(fake.proc.pid, signal.SIGKILL)  # the server gets SIGTERM from the kernel (parent-death signal)
    fake.proc.wait()
    deadline = time.monotonic() + 30  # generous: a loaded host (waits, not timings)
    while time.monotonic() < deadline and "stopped_by" not in json.loads((fake.state / "fake.json").read_text()):
        time.sleep(0.1)
    assert json.loads((fake.state / "fake.json").read_text()).get("stopped_by") == "SIGTERM", fake.output()
    assert _wait_gone([record["pid"]], 15) == []


def test_an_orphan_is_killed_while_the_server_runs(start) -> None:
    fake = start("orphan")
    record = fake.record()
    # The orphan is re-parented to init (the supervisor adopts nothing: see Supervisor.reap) and found by its tag.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "its parent in the server had died" not in fake.output():
        time.sleep(0.2)
    assert "its parent in the server had died" in fake.output(), "the orphan was not killed"
    assert fake.proc.poll() is None and all(_running(p) for p in [record["pid"], *record["children"]])
    os.killpg(fake.proc.pid, signal.SIGTERM)
    assert fake.proc.wait(timeout=15) == 0


def test_processes_started_under_the_server_are_never_taken_for_orphans(start) -> None:
    """A process the server's tree starts while the supervisor looks for orphans is still under the server (the
    supervisor once killed a compiler an engine had just spawned, and the engine's start failed)."""
    fake = start("busy")
    record = fake.record()
    time.sleep(3 * 2.0)  # three of the supervisor's orphan checks (serving/supervise.py: ORPHAN_CHECK_S)
    assert "its parent in the server had died" not in fake.output(), fake.output()
    assert fake.proc.poll() is None and all(_running(p) for p in [record["pid"], *record["children"]])
    os.killpg(fake.proc.pid, signal.SIGTERM)
    assert fake.proc.wait(timeout=15) == 0


def test_a_new_start_clears_what_an_earlier_server_left(start) -> None:
    """Supervisor and server both killed at once (nothing is left to clean up): the next start in the same state
    folder finds the record and kills what carries the old server's tag before it binds."""
    port = free_port()
    first = start(port=port)
    record = first.record()
    leftovers = record["children"]
    os.killpg(first.proc.pid, signal.SIGKILL)
    os.kill(record["pid"], signal.SIGKILL)
    first.proc.wait()
    assert all(_running(p) for p in leftovers)
    second = start(port=port, state=first.state)
    second.record()
    assert _wait_gone(leftovers, 5) == []
    assert "cleared an earlier server of this folder" in second.output()
    assert not Path(record["private"]).exists()
    assert len(lifeline.read_records(first.state)) == 1  # the running one's
    os.killpg(second.proc.pid, signal.SIGTERM)
    assert second.proc.wait(timeout=15) == 0


def test_a_port_in_use_is_refused_before_anything_starts(start) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as HAProxy binds
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fake = start(port=listener.getsockname()[1])
        assert fake.proc.wait(timeout=15) == 2
    assert "in use" in fake.output()
    assert not (fake.state / "fake.json").exists()


def test_port_in_use() -> None:
    port = free_port()
    assert not lifeline.port_in_use("127.0.0.1", port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert lifeline.port_in_use("127.0.0.1", port)
        assert lifeline.port_in_use("0.0.0.0", port)
    assert not lifeline.port_in_use("127.0.0.1", port)


def _this_process_record(tmp_path: Path, members: list[tuple[int, float]] | None = None) -> lifeline.ServerRecord:
    """A server record whose supervisor is this test process."""
    me = psutil.Process()
    return lifeline.ServerRecord(
        server_id="abc",
        supervisor_pid=me.pid,
        supervisor_started=me.create_time(),
        private=str(tmp_path / "private"),
        host="127.0.0.1",
        port=1,
        members=members or [],
    )


def test_records_of_running_servers_are_left_alone(tmp_path: Path) -> None:
    record = _this_process_record(tmp_path)
    lifeline.write_record(tmp_path, record)
    (tmp_path / "run" / "server-garbage.json").write_text("{not json")
    assert lifeline.clear_stale(tmp_path) == []
    assert [r for _, r in lifeline.read_records(tmp_path)] == [record]


def test_the_sweep_helper_kills_what_a_server_left_and_removes_its_folder(tmp_path: Path) -> None:
    """Started before anything dies, it sweeps when asked (by the server's tag and by recorded members) and exits
    after its answer; never asked, it exits at the end of its stdin."""
    private = tmp_path / "private"
    private.mkdir()
    env = {**os.environ, lifeline.SERVER_ID_ENV: "feedc0de"}
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    helper = lifeline.SweepHelper()
    swept = helper.sweep("feedc0de", str(private), [], exclude=[], timeout_s=10)
    assert swept is not None
    killed, removed = swept
    assert removed and not private.exists() and any(str(left.pid) in k for k in killed)
    assert left.wait(timeout=5) == -signal.SIGKILL
    assert psutil.Process(helper.pid).wait(timeout=5) == 0
    idle = lifeline.SweepHelper()
    idle.close()
    assert psutil.Process(idle.pid).wait(timeout=5) == 0


def test_the_folder_is_removed_though_a_dying_process_still_adds_to_it(tmp_path: Path) -> None:
    """A process that adds an entry after the first pass listed a folder (as HAProxy's reload does in the private
    folder's per-node folder) leaves it behind one pass; passes go on, the writer is stopped between them, and the
    folder goes. ``remove_folder`` (another process) removes what a pass can."""
    private = tmp_path / "private"
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            with contextlib.suppress(OSError):  # (not once the private folder has gone)
                (private / "node").mkdir(exist_ok=True)
                (private / "node" / f"admin.sock.{n}.tmp").touch()
            n += 1

    def kill_the_writer() -> None:
        stop.set()
        thread.join()

    (private / "node").mkdir(parents=True)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert lifeline.remove_tree(private, timeout_s=10, between=kill_the_writer)
    kill_the_writer()
    assert not private.exists()
    (private / "node" / "deep").mkdir(parents=True)
    (private / "node" / "deep" / "server-state").write_text("x")
    assert lifeline.remove_folder(private, timeout_s=10) and not private.exists()


def test_the_record_keeps_members_that_left_the_tree_while_they_run(tmp_path: Path) -> None:
    """A process once under the supervisor stays in the record while it runs, though it is no longer under it: when
    the server dies, its daemons and Ray's agents (which wipe the server's tag from their environment) become orphans
    that only the record names for the sweep, and the supervisor may look once more before it notices the death."""
    from serving.supervise import Supervisor

    # A process that is nobody's child here (its parent exited at once), as an orphaned agent is.
    started = subprocess.run(
        ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True
    )
    orphan = psutil.Process(int(started.stdout))
    try:
        supervisor = Supervisor([], None, tmp_path, None)  # type: ignore[arg-type]  # only the record is used
        # (the second member no longer runs)
        supervisor.record = _this_process_record(tmp_path, [(orphan.pid, orphan.create_time()), (2**22 + 7, 1.0)])
        supervisor._record_members()
        members = dict(supervisor.record.members)
        assert members.get(orphan.pid) == orphan.create_time() and 2**22 + 7 not in members
        assert [p.pid for p in lifeline.recorded(supervisor.record.members)].count(orphan.pid) == 1
    finally:
        orphan.kill()


def test_bounded_steps() -> None:
    assert bounded(lambda: None, 1) == "done"
    assert bounded(lambda: time.sleep(5), 0.2) == "timeout"
    assert bounded(lambda: 1 / 0, 1) == "ZeroDivisionError"
    flag = threading.Event()
    began = time.monotonic()
    threading.Timer(0.2, flag.set).start()
    assert bounded(lambda: time.sleep(5), 10, abort=flag.is_set) == "aborted"
    assert time.monotonic() - began < 2


def test_progress_events_round_trip_and_render(tmp_path: Path) -> None:
    from rich.console import Console

    read_fd, write_fd = os.pipe()
    report = Reporter(write_fd)
    report.begin("starting Ray")
    report.end("Ray started")
    report.say("ready at http://127.0.0.1:1/v1")
    report.exit(0)
    os.close(write_fd)
    events = [parse(line) for line in os.read(read_fd, 65536).splitlines()]
    os.close(read_fd)
    assert [e.kind for e in events if e] == ["begin", "end", "say", "exit"]
    assert parse(b"garbage") is None and parse(b'{"kind": "nope"}') is None
    with (tmp_path / "term.txt").open("w") as sink:
        terminal = Terminal(Console(file=sink, force_terminal=False))
        for event in filter(None, events):
            terminal.show(event)
        terminal.show(Event(kind="note", text="drain cut short"))
    text = (tmp_path / "term.txt").read_text()
    assert "starting Ray..." in text and "✓ Ray started" in text and "! drain cut short" in text


class _FakeServe:
    def __init__(self, delete_s: float) -> None:
        self.delete_s = delete_s
        self.calls: list[str] = []

    def delete(self, name: str) -> None:
        self.calls.append("delete")
        time.sleep(self.delete_s)

    def shutdown(self) -> None:
        self.calls.append("shutdown")


class _FakeRay:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def get_actor(self, name: str, namespace: str) -> str:
        self.calls.append(f"get_actor {namespace}/{name}")
        return name

    def kill(self, actor: str, no_restart: bool) -> None:
        self.calls.append(f"kill {actor}")


def _stop_events(
    monkeypatch: pytest.MonkeyPatch, delete_s: float, drain: float, daemons_alive: bool = True, own_cluster: bool = True
) -> tuple[list[Event], _FakeServe, _FakeRay, float]:
    from serving import serve as serve_module
    from serving.config import load_settings

    monkeypatch.setattr(serve_module, "_ray_daemons_alive", lambda: daemons_alive)
    settings = load_settings(
        data={
            "server": {"drain_timeout_s": drain},
            "backends": [
                {
                    "name": "remote",
                    "kind": "openai",
                    "sovereign": False,
                    "max_classification": "OFFICIAL",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "UNUSED_KEY",
                    "model": "m",
                }
            ],
            "models": [{"name": "default", "route": ["remote"]}],
        }
    )
    read_fd, write_fd = os.pipe()
    serve, ray = _FakeServe(delete_s), _FakeRay()
    began = time.monotonic()
    serve_module._stop_all(serve, ray, settings, Reporter(write_fd), began, own_cluster=own_cluster)
    took = time.monotonic() - began
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        events = [e for e in map(parse, pipe.read().splitlines()) if e is not None]
    return events, serve, ray, took


def test_stop_drains_then_stops_serve_and_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    events, serve, ray, _ = _stop_events(monkeypatch, delete_s=0.1, drain=5)
    assert serve.calls == ["delete", "shutdown"] and ray.calls == ["shutdown"]
    assert [e.text for e in events if e.kind == "end"] == [
        "requests in flight finished, application removed",
        "Ray stopped",
    ]
    assert not [e for e in events if e.kind == "note"]


def test_a_drain_that_runs_out_of_time_is_cut_short_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.serve import STOP_MARGIN_S

    events, _, ray, took = _stop_events(monkeypatch, delete_s=60, drain=1)
    assert took <= 1 + STOP_MARGIN_S
    assert ray.calls == ["shutdown"]
    assert any(e.kind == "note" and e.text.startswith("drain cut short") for e in events)


def test_without_rays_daemons_the_drain_is_skipped_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    events, serve, ray, took = _stop_events(monkeypatch, delete_s=60, drain=20, daemons_alive=False)
    assert serve.calls == [] and ray.calls == ["shutdown"] and took < 2
    assert any(e.kind == "note" and "already exited" in e.text for e in events)


def test_on_a_joined_cluster_only_the_application_and_its_ledger_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sovereign serve --address`: the stop deletes this application (its replicas drain) and its ledger actor,
    and disconnects; Serve (other applications' proxies and controller) and the cluster are left running. The
    cluster's daemons are not this server's: their state is not even looked at."""
    monkeypatch.setattr("serving.serve._ray_daemons_alive", lambda: pytest.fail("the cluster's daemons were checked"))
    events, serve, ray, _ = _stop_events(monkeypatch, delete_s=0.1, drain=5, own_cluster=False)
    assert serve.calls == ["delete"]
    assert ray.calls == [
        "get_actor sovereign/sovereign-ledger-sovereign",
        "kill sovereign-ledger-sovereign",
        "shutdown",
    ]
    assert [e.text for e in events if e.kind == "end"] == [
        "requests in flight finished, application removed",
        "disconnected; the cluster keeps running",
    ]
