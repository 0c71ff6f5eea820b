"""Real processes, real failures, on this module's own small apps (the suite's only extra app start-ups: two).

- A client that disconnects mid-stream: the generation is aborted in the engine and audited as cancelled (499);
  so is every one of several streams abandoned one after another.
  Observable: the engine here runs one sequence at a time (``max_num_seqs: 1``). A request that asked for 15,000
  tokens is read for a few seconds (which measures the engine's token rate) and then abandoned; a short request
  sent right after can only be scheduled once the engine slot is free. It answers in a fraction of the time the
  abandoned generation still needed at the measured rate, so the engine stopped generating it. (vLLM's own
  "Running: N reqs" statistics would be the direct observable, but Ray Serve LLM's replicas do not log them
  here and export engine metrics only through Ray's metrics agent.)
- The engine replica killed (SIGKILL) mid-stream: the client gets an error event, not a clean finish; the request
  is audited as failed; nothing sensitive goes to the commercial fake while the replica is down; Ray Serve
  starts a new replica and requests succeed again, its new vLLM worker bound to its own cores with everything
  else kept off them (serving/placement.py).
- SIGKILL of the server (the process that runs Ray): within 30 s no process of its tree (engines and HAProxy
  included) is left, and nothing listens on its ports.
- A server in development mode then starts on the same port: its terminal output holds the URL and the key and
  none of Ray's output, and it answers every request.
- SIGTERM to that server's process group under streaming load: new requests are refused, the streams in flight
  finish, each audited, the server exits 0 within drain_timeout_s + 10 s, and nothing of it is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from routing.audit import verify
from serving import lifeline
from serving.ports import free_port
from tests.reliability.procs import assert_isolated, descendants, engine_title, find_replica
from tests.support import wheel_minilm
from tests.support.app import TEST_ENGINE, RunningApp, start_app, start_dev_app, stop_app
from tests.support.audit import final_record

pytestmark = pytest.mark.engine

NHS = "943 476 5919"
HOST = frozenset(os.sched_getaffinity(0))
LONG_TOKENS = 15000  # far more than the engine produces in the seconds each test watches; fits max_model_len


@pytest.fixture(scope="module")
def fragile(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, fake_commercial: FakeOpenAIServer
) -> Iterator[RunningApp]:
    from routing.keys import create_key

    workdir = tmp_path_factory.mktemp("fragile")
    config = {
        "server": {"host": "127.0.0.1", "port": free_port()},
        "audit": {"path": str(workdir / "audit.jsonl")},
        "auth": {"keys_file": str(workdir / "keys.json")},
        "backends": [
            {
                "name": "local",
                "kind": "vllm",
                "model_source": str(tiny_model),
                "served_model_name": "tiny",
                "max_classification": "SECRET",
                "cpu_threads": 1,
                "engine": {**TEST_ENGINE, "dtype": "bfloat16", "max_model_len": 16384, "max_num_seqs": 1},
            },
            {
                "name": "commercial",
                "kind": "openai",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "base_url": fake_commercial.base_url,
                "api_key_env": "FAKE_COMMERCIAL_KEY",
                "model": "gpt-fake",
                "timeout_s": 5,
                "connect_timeout_s": 2,
            },
        ],
        "models": [{"name": "default", "route": ["local", "commercial"]}, {"name": "local-only", "route": ["local"]}],
        "egress_review": {"model": wheel_minilm()},
    }
    keys = {"tester": create_key(workdir / "keys.json", "tester")}
    env = {"FAKE_COMMERCIAL_KEY": "sk-fake-commercial"}
    running = start_app(config, workdir, keys, env=env)
    try:
        yield running
    finally:
        stop_app(running.process)


def _long_stream(app: RunningApp, max_tokens: int = LONG_TOKENS, content: str = "Tell me everything") -> dict:
    return {
        "model": "local-only",
        "stream": True,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": content}],
    }


def _final(app: RunningApp, request_id: str, timeout_s: float = 15) -> dict[str, Any]:
    return final_record(app.audit_path, request_id, timeout_s)


def _read_then_abandon(app: RunningApp, watch_s: float = 3) -> tuple[str, int, float, bool]:
    """Read a long stream for ``watch_s`` seconds from its first event, then drop the connection. Returns the
    request id, the events read, their rate, and whether the stream had already ended (nothing left to abort)."""
    with httpx.stream(
        "POST", f"{app.base_url}/chat/completions", json=_long_stream(app), headers=app.headers(), timeout=120
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        events, started = 0, None
        for line in response.iter_lines():
            if line.startswith("data:"):
                events += 1
                started = started or time.monotonic()
            if started is not None and time.monotonic() - started > watch_s:
                break
        else:
            return request_id, events, 0.0, True
        return request_id, events, events / (time.monotonic() - started), False


def test_client_disconnect_aborts_the_generation_in_the_engine(fragile: RunningApp) -> None:
    short = {"model": "local-only", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    # With the commercial route ready, /ready does not wait for the engine; this request does.
    warm = httpx.post(f"{fragile.base_url}/chat/completions", json=short, headers=fragile.headers(), timeout=300)
    assert warm.status_code == 200
    request_id, tokens, rate, ended = _read_then_abandon(fragile)
    # Seen once, in CI on 2026-11-29 (headers after 37 s, then all 15,000 tokens within 20 ms): the server was in
    # a session of its own and the kernel's autogroup starved this client; tests/support/app.py keeps it in ours.
    assert not ended, f"all {tokens} events came at once: streaming stalled"
    # Leaving the block closed the connection mid-stream. The engine's only slot must now be free. (The 503s once
    # seen here were the engine core dying past the test model's position limit, not the router: 78352df.)
    remaining_s = (LONG_TOKENS - tokens) / max(rate, 1.0)
    began = time.monotonic()
    after = httpx.post(f"{fragile.base_url}/chat/completions", json=short, headers=fragile.headers(), timeout=300)
    waited = time.monotonic() - began
    print(
        f"\nabort: ~{rate:.0f} tokens/s, the abandoned request still needed ~{remaining_s:.0f}s; "
        f"the next request (one engine slot) answered in {waited:.1f}s"
    )
    assert after.status_code == 200
    assert waited < remaining_s / 2, "the engine kept generating for a client that had gone"

    record = _final(fragile, request_id)
    assert record["status"] == 499
    assert record["attempts"][-1]["outcome"] == "cancelled"


def test_every_abandoned_stream_is_cancelled_and_audited(fragile: RunningApp) -> None:
    """Streams dropped one after another, each soon after its first event: every one is cancelled in the engine
    (the next is served by the engine's only slot, so a generation left running would hold up the rest) and
    audited as a cancellation, never as a complete answer."""
    abandoned = []
    for _ in range(8):
        request_id, tokens, rate, ended = _read_then_abandon(fragile, watch_s=0.5)
        assert not ended, f"all {tokens} events came at once: streaming stalled"
        abandoned.append((request_id, LONG_TOKENS / max(rate, 1.0)))
    for request_id, whole_stream_s in abandoned:
        record = _final(fragile, request_id)
        attempt = record["attempts"][-1]
        assert (record["status"], attempt["outcome"], attempt["reason"]) == (499, "cancelled", "client_disconnected")
        assert attempt["ms"] / 1000 < whole_stream_s / 2, "the generation ran on long after the client had gone"


def test_engine_replica_killed_mid_stream(fragile: RunningApp, commercial: FakeOpenAIServer) -> None:
    victim = find_replica(fragile.process.pid, engine_title("local"))
    assert victim is not None
    events: list[str] = []
    status: dict[str, Any] = {}

    def read() -> None:
        with httpx.stream(
            "POST",
            f"{fragile.base_url}/chat/completions",
            json=_long_stream(fragile),
            headers=fragile.headers(),
            timeout=120,
        ) as response:
            status["code"] = response.status_code
            status["id"] = response.headers["x-request-id"]
            try:
                events.extend(line for line in response.iter_lines() if line.startswith("data:"))
            except httpx.HTTPError as exc:
                status["transport_error"] = type(exc).__name__

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 60
    while len(events) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert events, "the stream never started"
    for proc in [victim, *victim.children(recursive=True)]:  # the replica and its vLLM engine-core process
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    reader.join(timeout=120)
    assert not reader.is_alive()

    assert status["code"] == 200
    assert "data: [DONE]" not in events  # never a clean finish
    if "transport_error" not in status:
        assert json.loads(events[-1][5:])["error"]["code"] == "stream_interrupted"
    record = _final(fragile, status["id"])
    assert record["status"] == 502
    assert record["attempts"][-1]["outcome"] == "failed_mid_stream"

    # While the replica is down (or restarting), sensitive requests never go to the commercial side.
    sensitive = {
        "model": "default",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": f"replicadown NHS number {NHS}"}],
    }
    down = httpx.post(f"{fragile.base_url}/chat/completions", json=sensitive, headers=fragile.headers(), timeout=240)
    assert down.status_code in {200, 503}, down.text
    assert "replicadown" not in json.dumps(commercial.received)

    # Ray Serve replaces the replica; requests succeed again.
    deadline = time.monotonic() + 300
    ok = False
    while time.monotonic() < deadline and not ok:
        response = httpx.post(
            f"{fragile.base_url}/chat/completions",
            headers=fragile.headers(),
            timeout=120,
            json={"model": "local-only", "max_tokens": 2, "messages": [{"role": "user", "content": "hello again"}]},
        )
        ok = response.status_code == 200
        if not ok:
            time.sleep(3)
    assert ok, "the engine replica did not come back"
    replacement = find_replica(fragile.process.pid, engine_title("local"))
    assert replacement is not None and replacement.pid != victim.pid
    assert "replicadown" not in json.dumps(commercial.received)

    # The new replica was started by a raylet already moved off the engine's cores (serving/placement.py): it
    # spread itself again before its engine started, so vLLM could bind the new worker, and the rest moved after.
    if len(HOST) > 1:
        workers, _ = assert_isolated(fragile.process.pid, HOST)
        assert set(workers) <= {p.pid for p in replacement.children(recursive=True)}


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:  # gone, or a zombie, since the family was listed
        return []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _family(app: RunningApp) -> tuple[list[psutil.Process], set[int], Path]:
    """Everything under the app's supervisor (engine processes included), the TCP ports they listen on, and the
    server's private folder (HAProxy's configuration is in it)."""
    family = [p for p in descendants(app.process.pid) if _alive(p)]  # not zombies: the supervisor collects none
    titles = " ".join(" ".join(_cmdline(p)) for p in family)
    assert engine_title("local") in titles and "VLLM::EngineCore" in titles and "haproxy" in titles
    ports = {port for ports in lifeline.listeners(p.pid for p in family).values() for port in ports}
    assert int(app.root.rsplit(":", 1)[1]) in ports
    private = next(
        Path(arg).parent.parent
        for p in family
        if "haproxy" in p.name()
        for arg in _cmdline(p)
        if arg.endswith("haproxy.cfg")
    )
    return family, ports, private


def _assert_nothing_left(family: list[psutil.Process], ports: set[int], private: Path, within_s: float) -> None:
    def running() -> list[str]:
        left = []
        for proc in family:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{proc.name()} ({proc.pid})")
        return left

    def listening() -> list[int]:
        return sorted(
            {
                c.laddr.port
                for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports
            }
        )

    def strays() -> list[int]:
        return [p.pid for p in psutil.process_iter(["cmdline"]) if str(private) in " ".join(p.info["cmdline"] or [])]

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and (running() or listening() or strays() or private.exists()):
        time.sleep(0.5)
    assert not running(), f"processes of the server left running: {running()}"
    assert not listening(), f"ports of the server still listened on: {listening()}"
    assert not strays(), f"processes of this server's private folder {private} left running: {strays()}"
    assert not private.exists()


def test_zz_sigkill_of_the_server_leaves_nothing_running(fragile: RunningApp) -> None:
    """The process that runs Ray killed outright (as the OOM killer or a crash would): its supervisor, the process
    the operator started, kills everything the server had started, engines and HAProxy included. Stops this
    module's first app."""
    family, ports, private = _family(fragile)
    server = next(p for p in psutil.Process(fragile.process.pid).children() if "serving.cli" in " ".join(p.cmdline()))
    began = time.monotonic()
    server.send_signal(signal.SIGKILL)
    rc = fragile.process.wait(timeout=30)
    _assert_nothing_left(family, ports, private, within_s=max(1.0, 30 - (time.monotonic() - began)))
    took = time.monotonic() - began
    print(
        f"\nsigkill of the server: supervisor exit status {rc}, {len(family)} processes and ports {sorted(ports)} "
        f"gone in {took:.1f} s"
    )
    assert rc == 128 + signal.SIGKILL
    assert "killed by SIGKILL" in fragile.log_path.read_text()


@pytest.fixture(scope="module")
def successor(
    tmp_path_factory: pytest.TempPathFactory, fragile: RunningApp, tiny_model: Path, embedding_model: Path
) -> Iterator[RunningApp]:
    """A server in development mode (no configuration: it prints its key) on the port the fragile app listened on.
    Its default models' folders are the test models, and its backends are narrowed to the tiny one through the
    environment, so it starts one small engine."""
    if fragile.process.poll() is None:  # the test that stops it did not run or failed early
        stop_app(fragile.process)
    workdir = tmp_path_factory.mktemp("successor")
    models = workdir / "var" / "models"
    models.mkdir(parents=True)
    (models / "smollm2").symlink_to(tiny_model)
    (models / "minilm").symlink_to(embedding_model)
    backend = {
        "name": "local",
        "kind": "vllm",
        "model_source": "var/models/smollm2",
        "served_model_name": "tiny",
        "max_classification": "SECRET",
        "cpu_threads": 1,
        "engine": {**TEST_ENGINE, "dtype": "bfloat16", "max_model_len": 4096, "max_num_seqs": 4},
    }
    env = {
        "SOVEREIGN_BACKENDS": json.dumps([backend]),
        "SOVEREIGN_MODELS": json.dumps([{"name": "default", "route": ["local"]}]),
    }
    running = start_dev_app(workdir, int(fragile.root.rsplit(":", 1)[1]), env=env)
    try:
        yield running
    finally:
        stop_app(running.process)


def test_zz_a_development_start_on_the_same_port_shows_url_and_key_and_answers_every_request(
    successor: RunningApp,
) -> None:
    shown = successor.log_path.read_text()
    print(f"\nterminal output of the development start:\n{shown}")
    assert f"ready at {successor.base_url}" in shown
    assert successor.keys["developer"] in shown and "OpenAI(base_url=" in shown
    assert "✓ application ready" in shown
    noise = [
        line
        for line in shown.splitlines()
        if "Deployment Options" in line or line.lstrip().startswith(("{", "INFO", "WARNING", "[20"))
    ]
    assert not noise, f"Ray's output on the terminal: {noise[:5]}"
    assert "var/log/serve-" in shown
    client = successor.client("developer")
    for i in range(6):
        reply = client.chat.completions.create(
            model="default", max_tokens=4, messages=[{"role": "user", "content": f"hello {i}"}]
        )
        assert reply.choices[0].message.content is not None
        chunks = list(
            client.chat.completions.create(
                model="default", max_tokens=4, stream=True, messages=[{"role": "user", "content": f"stream {i}"}]
            )
        )
        assert chunks and chunks[-1].choices[0].finish_reason is not None


def _where_stuck(pid: int) -> str:
    """Where a process that does not exit is, as the kernel sees it: each thread's state, wait channel and kernel
    stack (readable as root), and its children's states: the evidence for a hang that Python cannot report."""
    lines = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        parts = []
        for name in ("stat", "wchan", "stack"):
            with contextlib.suppress(OSError):
                text = (task / name).read_text(errors="replace").strip()
                parts.append(f"{name}: {text.rsplit(')', 1)[-1].split()[0] if name == 'stat' else text}")
        lines.append(f"thread {task.name}: " + " | ".join(parts))
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                lines.append(f"child {child.pid} {child.name()} {child.status()}")
    return "\n".join(lines) or f"no /proc/{pid}"


def test_zz_sigterm_to_the_process_group_drains_streams_then_exits_within_the_bound(successor: RunningApp) -> None:
    """SIGTERM to the whole process group, as a terminal or a process supervisor sends it, under streaming load:
    new requests are refused, the streams in flight finish, every request is audited, the server exits 0 within
    drain_timeout_s + 10 s, and nothing of it is left running or listening. Stops the second app."""
    from serving.config import ServerConfig

    bound_s = ServerConfig().drain_timeout_s + 10
    family, ports, private = _family(successor)
    streams: list[dict[str, Any]] = [{"events": []} for _ in range(3)]

    def read(state: dict[str, Any]) -> None:
        # Long enough to be in flight when the signal comes (three events in), short enough to finish inside the
        # 20 s drain on a loaded 2-core host: 200 tokens took past it once at ~3 tokens/s while other work ran, and
        # 120 once at ~4 tokens/s (85 events by the drain's end).
        body = {
            "model": "default",
            "stream": True,
            "max_tokens": 48,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me everything"}],
        }
        with httpx.stream(
            "POST",
            f"{successor.base_url}/chat/completions",
            headers=successor.headers("developer"),
            json=body,
            timeout=120,
        ) as response:
            state["code"] = response.status_code
            state["id"] = response.headers["x-request-id"]
            try:
                state["events"].extend(line for line in response.iter_lines() if line.startswith("data:"))
            except httpx.HTTPError as exc:
                state["transport_error"] = type(exc).__name__

    readers = [threading.Thread(target=read, args=(state,)) for state in streams]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 60
    while any(len(state["events"]) < 3 for state in streams) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(state["events"] for state in streams), "the streams never started"
    began = time.monotonic()
    os.killpg(successor.process.pid, signal.SIGTERM)
    time.sleep(1.5)
    try:
        late = httpx.post(
            f"{successor.base_url}/chat/completions",
            headers=successor.headers("developer"),
            timeout=30,
            json={"model": "default", "max_tokens": 2, "messages": [{"role": "user", "content": "too late"}]},
        )
        late_status: int | str = late.status_code
    except httpx.HTTPError as exc:
        late_status = type(exc).__name__
    for reader in readers:
        reader.join(timeout=120)
    try:
        rc = successor.process.wait(timeout=bound_s + 30)
    except subprocess.TimeoutExpired:
        stuck = _where_stuck(successor.process.pid)
        raise AssertionError(
            f"the supervisor did not exit within {bound_s + 30:.0f} s:\n{stuck}\n"
            f"{successor.log_path.read_text()[-2000:]}"
        ) from None
    took = time.monotonic() - began
    # The supervisor's exit is bounded (above); what it left to its sweep helper, which outlives it, and a server
    # process stuck in the kernel's release of its task may take longer on this project's VM kernel after a large
    # tree dies (the helper was seen finishing ~10 s after the supervisor's exit, its /proc reads stalled there), so
    # nothing may be left 30 s after it.
    _assert_nothing_left(family, ports, private, within_s=30)
    shown = successor.log_path.read_text()
    print(
        f"\nsigterm to the group: {[len(s['events']) for s in streams]} events per stream, request after "
        f"SIGTERM: {late_status}; exit status {rc} after {took:.1f} s (bound {bound_s:.0f} s)\n"
        + "\n".join(shown.splitlines()[-8:])
    )
    assert late_status != 200, "a new request was accepted after SIGTERM"
    for state in streams:
        assert state.get("code") == 200 and "transport_error" not in state
        assert state["events"][-1] == "data: [DONE]", "a stream in flight was not drained"
        assert _final(successor, state["id"], timeout_s=1)["status"] == 200
    assert rc == 0
    assert took <= bound_s
    assert verify(successor.audit_path).ok
    # The drain is never cut short; Serve's and Ray's own shutdowns may be on a busy host (each step is bounded,
    # Ray's shutdown stops what Serve's left, the daemons are then killed, and the line says so: what the issue asks
    # for).
    shutdowns = ("Ray's shutdown", "Serve's shutdown")
    assert [
        line for line in shown.splitlines() if "cut short" in line and not any(name in line for name in shutdowns)
    ] == []
    assert list((successor.log_path.parent / "var" / "run").glob("*.json")) == []
