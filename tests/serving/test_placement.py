"""CPU placement (serving/placement.py): the rest of the server kept off the cores vLLM binds its worker to.

The rules on real process trees (``exec -a`` gives a process the title the placer looks for, the test binds the
"worker" as vLLM would), and the running session app: every process but vLLM's workers on the other cores.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from serving.placement import ENGINE_NICE_ENV, HOST_CPUS_ENV, engine_nice, host_cpus, place, reserved_cpus
from tests.reliability.procs import assert_isolated
from tests.support.app import RunningApp, wait_for_every_backend

HOST = frozenset(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(len(HOST) < 2, reason="placement needs at least two CPUs")
ENGINE = "ray::ServeReplica:app:engine-"


def test_reserved_cpus() -> None:
    host = frozenset({0, 1, 2, 3})
    assert reserved_cpus(host, [frozenset({0, 1, 2})]) == {3}
    assert reserved_cpus(host, [frozenset({0}), frozenset({1})]) == {2, 3}
    assert reserved_cpus(host, []) == frozenset()  # no worker: nothing to do
    assert reserved_cpus(host, [host]) == frozenset()  # vLLM bound nothing
    assert reserved_cpus(host, [frozenset({0, 1}), frozenset({2, 3})]) == frozenset()  # no CPU left over


def test_host_cpus_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOST_CPUS_ENV, "0,1,3")
    assert host_cpus() == {0, 1, 3}
    for bad in ("", "0,x", " , "):
        monkeypatch.setenv(HOST_CPUS_ENV, bad)
        assert host_cpus() is None
    monkeypatch.delenv(HOST_CPUS_ENV)
    assert host_cpus() is None


def _titled(title: str, command: str = "sleep 120") -> str:
    return f"(exec -a '{title}' {command}) &"


@pytest.fixture
def tree() -> Iterator[psutil.Process]:
    """A root with: a bound worker, a plain helper, a starting engine replica (no worker yet), and an engine
    replica whose worker is bound."""
    script = " ".join([
        _titled("VLLM::Worker"),
        _titled("helper"),
        _titled(ENGINE + "starting"),
        _titled(ENGINE + "started", "bash -c \"(exec -a VLLM::Worker_TP0 sleep 120) & wait\""),
        "wait",
    ])  # fmt: skip
    proc = subprocess.Popen(["bash", "-c", script])
    root = psutil.Process(proc.pid)
    deadline = time.monotonic() + 10
    while len(root.children(recursive=True)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield root
    finally:
        for p in [*root.children(recursive=True), root]:
            p.kill()
        proc.wait()


def _by_title(root: psutil.Process) -> dict[str, frozenset[int]]:
    return {p.cmdline()[0]: frozenset(p.cpu_affinity()) for p in [root, *root.children(recursive=True)]}


@needs_two_cpus
def test_place_moves_all_but_workers_and_starting_engines(tree: psutil.Process) -> None:
    engine_core = frozenset({min(HOST)})
    for p in tree.children(recursive=True):
        if p.cmdline()[0].startswith("VLLM::Worker"):
            p.cpu_affinity(sorted(engine_core))  # what vLLM's OpenMP binding does
    reserved = place(tree, HOST, ENGINE)
    assert reserved == HOST - engine_core
    seen = _by_title(tree)
    assert seen["VLLM::Worker"] == engine_core
    assert seen["VLLM::Worker_TP0"] == engine_core
    assert seen["helper"] == reserved
    assert seen["bash"] == reserved  # the root itself
    assert seen[ENGINE + "started"] == reserved  # its worker is bound: it is safe to move
    assert seen[ENGINE + "starting"] == HOST  # no worker yet: moving it now would leave its worker unbound


def _nices(proc: psutil.Process) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, t.id) for t in proc.threads()}


@needs_two_cpus
def test_place_lowers_only_the_workers_priority(tree: psutil.Process) -> None:
    """vLLM's CPU workers at nice 15, below the request path: the engine's compute yields (serving/placement.py)."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    nice = max(base, 15)
    by_title = {p.cmdline()[0]: p for p in [tree, *tree.children(recursive=True)]}
    assert place(tree, HOST, ENGINE, worker_nice=nice) == frozenset()  # nothing bound: nothing moved, but...
    assert _nices(by_title["VLLM::Worker"]) == _nices(by_title["VLLM::Worker_TP0"]) == {nice}
    assert all(_nices(p) == {base} for t, p in by_title.items() if not t.startswith("VLLM::Worker"))
    place(tree, HOST, ENGINE, worker_nice=base)  # never lowers the nice value back (that needs privilege)
    assert _nices(by_title["VLLM::Worker"]) == {nice}


def test_engine_nice_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_NICE_ENV, raising=False)
    assert engine_nice() == 15
    for text, expected in (("0", 0), (" 7 ", 7), ("40", 19), ("-30", -20), ("off", None), ("OFF", None), ("", None)):
        monkeypatch.setenv(ENGINE_NICE_ENV, text)
        assert engine_nice() == expected


def test_engine_nice_mistyped_keeps_the_default_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENGINE_NICE_ENV, "fifteen")
    logger = logging.getLogger("sovereign.placement")
    logger.addHandler(caplog.handler)  # directly: the "sovereign" loggers may not propagate to the root
    try:
        assert engine_nice() == 15
    finally:
        logger.removeHandler(caplog.handler)
    assert ENGINE_NICE_ENV in caplog.text and "fifteen" in caplog.text


@needs_two_cpus
def test_place_does_nothing_until_a_worker_is_bound(tree: psutil.Process) -> None:
    assert place(tree, HOST, ENGINE) == frozenset()
    assert set(_by_title(tree).values()) == {HOST}


@needs_two_cpus
def test_an_engine_replica_spreads_over_the_host_before_its_engine_starts() -> None:
    """A replica started by a raylet already moved to the reserved CPUs must give its worker the whole host."""
    code = (
        "import os, threading; from serving.placement import spread_for_engine; spread_for_engine(); "
        "print(sorted(os.sched_getaffinity(0)), sorted(os.sched_getaffinity(threading.get_native_id())))"
    )
    narrow = str(max(HOST))
    env = {**os.environ, HOST_CPUS_ENV: ",".join(map(str, sorted(HOST)))}
    out = subprocess.run(
        ["taskset", "-c", narrow, sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == f"{sorted(HOST)} {sorted(HOST)}"
    env.pop(HOST_CPUS_ENV)  # not under `sovereign serve`: a replica leaves its mask as it is
    out = subprocess.run(
        ["taskset", "-c", narrow, sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == f"[{narrow}] [{narrow}]"


@pytest.mark.engine
@needs_two_cpus
def test_the_running_server_keeps_everything_off_the_engine_cores(app: RunningApp) -> None:
    wait_for_every_backend(app)  # an engine other tests stopped may still be coming back
    workers, rest = assert_isolated(app.process.pid, HOST)
    assert len(workers) == 2  # the chat and the embedding engines
    assert any("ServeReplica:sovereign:ingress" in title for title in rest)
    assert any("VLLM::EngineCore" in title for title in rest)
    # ...and the engines' compute below the request path: vLLM's workers at nice 15, the router at the app's own.
    app_nice = os.getpriority(os.PRIO_PROCESS, app.process.pid)
    deadline = time.monotonic() + 30
    while any(_nices(psutil.Process(pid)) != {max(app_nice, 15)} for pid in workers):
        assert time.monotonic() < deadline, "vLLM's workers were not put at nice 15"
        time.sleep(1)
    ingress = [
        p
        for p in psutil.Process(app.process.pid).children(recursive=True)
        if "ServeReplica:sovereign:ingress" in " ".join(p.cmdline())
    ]
    assert ingress and all(_nices(p) == {app_nice} for p in ingress)


@pytest.mark.parametrize(("accelerators", "isolate", "expected"), [
    (["cpu"], True, True),
    (["cpu", "cpu"], True, True),
    (["cpu", "gpu"], True, False),  # a GPU engine's processes would be squeezed onto the cores left over
    (["gpu"], True, False),
    (["cpu"], False, False),
])  # fmt: skip
def test_sovereign_serve_isolates_cpu_engines_on_cpu_only_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accelerators: list[str], isolate: bool, expected: bool
) -> None:
    from serving.config import load_settings
    from serving.serve import _ray_env

    monkeypatch.delenv(HOST_CPUS_ENV, raising=False)
    backends = [
        {"name": f"m{i}", "kind": "vllm", "model_source": str(tmp_path), "accelerator": a}
        for i, a in enumerate(accelerators)
    ]
    settings = load_settings(
        data={
            "server": {"isolate_cpu_engines": isolate},
            "backends": backends,
            "models": [{"name": "default", "route": ["m0"]}],
        }
    )
    env = _ray_env(settings, tmp_path)
    assert (HOST_CPUS_ENV in env) is expected
    # Under placement the request path at nice 0 and vLLM's workers at 15 (the placer); else Ray's own 15.
    assert env.get("RAY_worker_niceness") == ("0" if expected else None)
    if expected:
        assert {int(c) for c in env[HOST_CPUS_ENV].split(",")} == HOST
