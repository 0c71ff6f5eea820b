"""The comparison document, its CSV and plots, and the overhead figures, from synthetic run summaries."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cpu as cpu_usage
from benchmarks.compare import format_comparison, machine_info, median_round, ratios, write_outputs
from benchmarks.metrics import RequestResult, aggregate
from benchmarks.overhead import overhead_figures, upstream_backend
from benchmarks.targets import engine_backend, vllm_server_args
from serving.config import load_settings


def summary(tps: float, ttft_s: float, concurrency: int = 16, failed: int = 0) -> dict:
    results = [RequestResult(True, 0.0, ttft_s, [0.01] * 63, ttft_s + 0.63, 100, 64, True) for _ in range(8)]
    results += [RequestResult(False, error_kind="http_503") for _ in range(failed)]
    s = aggregate(results, duration_s=8 * 64 / tps)
    return s | {"max_concurrency": concurrency}


def test_ratios():
    r = ratios({"vllm": summary(200, 0.5), "ray_serve_llm": summary(150, 0.6), "gateway": summary(190, 0.505)})
    assert r["gateway_vs_vllm_output_throughput"] == pytest.approx(0.95)
    assert r["gateway_vs_ray_serve_llm_output_throughput"] == pytest.approx(190 / 150)
    assert r["gateway_minus_vllm_median_ttft_ms"] == pytest.approx(5.0)
    assert ratios({"gateway": summary(1, 1)})["gateway_vs_vllm_output_throughput"] is None
    assert "gateway_unplaced_vs_vllm_output_throughput" not in r  # only when that target ran
    r = ratios({"vllm": summary(200, 0.5), "gateway": summary(190, 0.5), "gateway_unplaced": summary(170, 0.5)})
    assert r["gateway_unplaced_vs_vllm_output_throughput"] == pytest.approx(0.85)
    r = ratios(
        {
            "vllm": summary(200, 0.5) | {"p99_itl_ms": 43.0, "median_itl_ms": 35.0, "p90_itl_ms": 38.0},
            "gateway": summary(190, 0.5) | {"p99_itl_ms": 152.0, "median_itl_ms": 0.01, "p90_itl_ms": 150.0},
        }
    )
    assert r["gateway_minus_vllm_p99_itl_ms"] == pytest.approx(109.0)
    assert r["gateway_minus_vllm_median_itl_ms"] == pytest.approx(-34.99)
    assert r["gateway_minus_vllm_p90_itl_ms"] == pytest.approx(112.0)
    assert ratios({"gateway": summary(1, 1)})["gateway_minus_vllm_p99_itl_ms"] is None
    r = ratios({"vllm": summary(200, 0.5), "gateway_nice0": summary(20, 0.5)})
    assert r["gateway_nice0_vs_vllm_output_throughput"] == pytest.approx(0.1)
    assert "gateway_unplaced_vs_vllm_output_throughput" not in r


def test_the_cpu_hog_spins_where_the_targets_vllm_worker_is_not(tmp_path: Path):
    """On a real process tree: a "worker" (titled as vLLM titles it, bound to the first CPU) under the target."""
    import os
    import subprocess
    import time

    import psutil

    from benchmarks.compare import hog_cpus
    from benchmarks.targets import Target

    host = sorted(os.sched_getaffinity(0))
    if len(host) < 2:
        pytest.skip("needs two CPUs")
    tree = subprocess.Popen(["bash", "-c", f"taskset -c {host[0]} bash -c 'exec -a VLLM::Worker sleep 60' & wait"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            p.cmdline()[:1] == ["VLLM::Worker"] for p in psutil.Process(tree.pid).children(recursive=True)
        ):
            time.sleep(0.1)
        assert hog_cpus(Target("t", "", "", tree)) == frozenset(host[1:])
        assert hog_cpus(Target("t", "", "")) == frozenset({host[-1]})  # no worker found: the last CPU
    finally:
        for child in psutil.Process(tree.pid).children(recursive=True):
            child.kill()
        tree.kill()
        tree.wait()


def test_the_cpu_hog_shares_its_targets_session_spins_only_when_switched_on_and_ends_with_it(tmp_path: Path):
    """benchmarks/hog.py on a real process: the hog is in the target's process group, idle until the switch file names
    CPUs, then busy on those CPUs, and gone once the target exits."""
    import os
    import subprocess
    import sys
    import time

    import psutil

    from benchmarks.processes import start_process

    switch = tmp_path / "hog-cpus"
    target = start_process([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "t.log", hog=switch)
    try:
        deadline = time.monotonic() + 20
        while not (hogs := psutil.Process(target.pid).children()) and time.monotonic() < deadline:
            time.sleep(0.1)
        (hog,) = hogs
        # The target's process group (signalled as one), in the benchmark's session (one scheduling group).
        assert os.getpgid(hog.pid) == os.getpgid(target.pid) == target.pid
        assert os.getsid(hog.pid) == os.getsid(target.pid) == os.getsid(0)
        assert hog.cpu_percent(interval=1.0) < 10  # no switch file: asleep
        cpu = max(os.sched_getaffinity(0))
        switch.write_text(str(cpu))
        time.sleep(0.5)
        # Busy: a share of a core the rest of the machine may be using too, so the best of a few seconds counts.
        busy: list[float] = []
        while len(busy) < 8 and max(busy, default=0.0) <= 30:
            busy.append(hog.cpu_percent(interval=1.0))
        assert max(busy) > 30, busy
        assert hog.cpu_affinity() == [cpu]
    finally:
        target.kill()
        target.wait()
    hog.wait(timeout=5)  # its parent went: it ends
    assert subprocess.run([sys.executable, "-m", "benchmarks.hog"], capture_output=True).returncode == 2


def test_the_unplaced_gateway_is_the_gateway_without_cpu_placement(tmp_path: Path):
    import yaml

    from benchmarks.targets import gateway_config

    path = gateway_config(tmp_path, 1234, [], ["local"], server={"isolate_cpu_engines": False})
    assert yaml.safe_load(path.read_text())["server"] == {
        "host": "127.0.0.1",
        "port": 1234,
        "isolate_cpu_engines": False,
    }


def test_write_outputs_json_csv_plots(tmp_path: Path):
    doc: dict[str, Any] = {
        "targets": {"vllm": summary(200, 0.5), "gateway": summary(190, 0.5)},
        "sweeps": {
            "vllm": [summary(60, 0.1, 1), summary(200, 0.5, 16)],
            "gateway": [summary(58, 0.1, 1), summary(190, 0.5, 16)],
        },
        "machine": machine_info(),
    }
    doc["ratios"] = ratios(doc["targets"])
    written = write_outputs(doc, tmp_path / "out.json")
    data = json.loads((tmp_path / "out.json").read_text())
    assert set(data["targets"]) == {"vllm", "gateway"}
    assert data["targets"]["vllm"]["output_throughput"] == pytest.approx(200)
    with (tmp_path / "out.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["target"] for r in rows] == [
        "vllm",
        "gateway",
        "vllm/sweep",
        "vllm/sweep",
        "gateway/sweep",
        "gateway/sweep",
    ]
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == 3 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert "gateway_vs_vllm_output_throughput: 0.950" in format_comparison(doc)


def test_overhead_figures():
    direct, gateway = summary(1000, 0.001, 1), summary(900, 0.0025, 1)
    figs = overhead_figures(direct, gateway, summary(5000, 0.01, 64), summary(1500, 0.02, 64, failed=0))
    assert figs["added_p50_ms_c1"] == pytest.approx(1.5)
    assert figs["gateway_rps"] == pytest.approx(summary(1500, 0.02, 64)["request_throughput"])
    failing = overhead_figures(direct, gateway, summary(5000, 0.01), summary(1500, 0.02, failed=2))
    assert failing["gateway_rps"] is None and failing["gateway_failed"] == 2


def test_gateway_configs_are_valid(tmp_path: Path):
    backend = engine_backend(tmp_path, max_model_len=1024, max_num_seqs=8, cpu_threads=2)
    as_gateway = backend.model_dump(mode="json", exclude_none=True)
    load_settings(data={"backends": [as_gateway], "models": [{"name": "default", "route": ["local"]}]})
    load_settings(data={"backends": [upstream_backend("http://127.0.0.1:1/v1")],
                        "models": [{"name": "default", "route": ["upstream"]}]})  # fmt: skip


def test_vllm_args_mirror_engine_settings(tmp_path: Path):
    backend = engine_backend(tmp_path, dtype="float32", max_model_len=1024, max_num_seqs=8, extra={"seed": 3})
    args = vllm_server_args(backend)
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--dtype"] == "float32" and pairs["--max-model-len"] == "1024" and pairs["--max-num-seqs"] == "8"
    assert pairs["--served-model-name"] == "default" and "--seed" in args


def test_the_median_round_counts_and_every_round_is_reported(tmp_path: Path):
    rounds = [summary(215, 0.8), summary(252, 0.68), summary(238, 0.7)]
    assert median_round(rounds)["output_throughput"] == pytest.approx(238)
    assert median_round(rounds[:2])["output_throughput"] == pytest.approx(215)  # even count: the lower middle
    assert median_round(rounds[:1]) is rounds[0]
    with pytest.raises(ValueError):
        median_round([])
    doc = {"targets": {"gateway": median_round(rounds)}, "rounds": {"gateway": rounds}}
    assert "gateway rounds (out tok/s, the median one counts): 215.0 / 252.0 / 238.0" in format_comparison(doc)


def test_compare_refuses_zero_rounds(capsys: pytest.CaptureFixture[str]):
    from benchmarks.cli import main

    assert main(["compare", "--rounds", "0", "--json", "/nonexistent/out.json"]) == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err
    from benchmarks.compare import run_compare  # the GPU script calls it directly: it refuses too, before starting

    with pytest.raises(ValueError, match="rounds"):
        run_compare(Path("/nonexistent"), concurrency=1, num_prompts=1, input_len=1, output_len=1, rounds=0)


def test_cpu_time_is_grouped_by_what_each_process_is():
    before = {(1, 0.0): ("ray::ServeController", 10.0), (2, 0.0): ("VLLM::EngineCore", 5.0),
              (3, 0.0): ("haproxy", 1.0), (9, 0.0): ("x", 0.0), (7, 0.0): ("ray::IDLE", 50.0)}  # fmt: skip
    after = {
        (1, 0.0): ("ray::ServeController", 11.0),
        (2, 0.0): ("VLLM::EngineCore", 25.0),
        (3, 0.0): ("haproxy", 1.1),  # under 1% of the total: "other"
        (4, 0.0): ("VLLM::EngineCore", 3.0),  # started in between: counted from zero, with its group
        (5, 0.0): ("python", 0.05),
        (7, 9.0): ("ray::IDLE", 1.0),  # pid 7 again, but a new process: from zero
    }
    assert cpu_usage.spent(before, after) == {
        "VLLM::EngineCore": 23.0, "ray::ServeController": 1.0, "ray::IDLE": 1.0, "other": 0.15}  # fmt: skip


def test_a_process_keeps_its_group_whatever_it_is_doing():
    assert cpu_usage._group(10, "python", ["ray::ServeController.listen_for_change", ""]) == "ray::ServeController"
    assert cpu_usage._group(10, "python", ["ray::ServeReplica:sovereign:engine-local"]) == (
        "ray::ServeReplica:sovereign:engine-local"
    )
    assert cpu_usage._group(10, "kworker/1:2-events", []) == cpu_usage._group(10, "kworker/u8:0-writeback", [])


def test_a_cpu_snapshot_sees_this_process_as_the_load_generator():
    sum(range(2_000_000))
    groups = {group for group, _ in cpu_usage.snapshot().values()}
    assert cpu_usage.LOAD_GENERATOR in groups


def test_stolen_time_is_a_count_since_boot():
    first = cpu_usage.stolen_seconds()
    assert 0.0 <= first <= cpu_usage.stolen_seconds()


def test_sweep_ratios_compare_targets_at_each_concurrency():
    from benchmarks.compare import sweep_ratios

    sweeps = {
        "vllm": [summary(30, 0.06, concurrency=1), summary(250, 0.7, concurrency=16)],
        "gateway": [summary(29, 0.065, concurrency=1), summary(245, 0.7, concurrency=16)],
    }
    r = sweep_ratios(sweeps)
    assert set(r) == {"1", "16"}
    assert r["1"]["gateway_vs_vllm_output_throughput"] == pytest.approx(29 / 30)
    assert r["1"]["gateway_minus_vllm_median_ttft_ms"] == pytest.approx(5.0)
    assert r["16"]["gateway_vs_vllm_output_throughput"] == pytest.approx(0.98)
    assert r["16"]["gateway_minus_vllm_p99_itl_ms"] == pytest.approx(0.0)


def test_the_comparison_quotes_itl_beside_throughput_at_every_concurrency():
    from benchmarks.compare import sweep_ratios

    targets = {"vllm": summary(250, 0.7), "gateway": summary(245, 0.7)}
    sweeps = {name: [summary(30, 0.06, concurrency=1)] for name in targets}
    text = format_comparison(
        {"targets": targets, "sweeps": sweeps, "ratios": ratios(targets), "sweep_ratios": sweep_ratios(sweeps)}
    )
    assert "ITL ms p50/p90/p99" in text and "10.0/10.0/10.0" in text
    assert "gateway@c1" in text
    assert "gateway_minus_vllm_p99_itl_ms: 0.000" in text
    assert "c1 gateway_minus_vllm_p99_itl_ms: 0.000" in text


def test_compare_refuses_an_unknown_client_before_starting_anything(tmp_path: Path):
    from benchmarks.compare import run_compare

    with pytest.raises(ValueError, match="client"):
        run_compare(
            tmp_path,
            concurrency=1,
            num_prompts=1,
            input_len=8,
            output_len=8,
            client="wrk",
            targets=(),
            workdir=tmp_path,
        )


def test_jwt_figures_side_by_side(tmp_path: Path):
    from benchmarks.fake_idp import FakeIdP
    from benchmarks.overhead import format_overhead, jwt_figures
    from benchmarks.targets import gateway_config

    runs = {
        "gateway_c1": summary(900, 0.0025, 1),
        "gateway_jwt_c1": summary(890, 0.0030, 1),
        "gateway_max": summary(1500, 0.02, 64),
        "gateway_jwt_max": summary(1400, 0.02, 64),
    }
    figs = jwt_figures(runs)
    assert figs["jwt_cost_p50_ms_c1"] == pytest.approx(0.5)
    doc = overhead_figures(
        summary(1000, 0.001, 1), runs["gateway_c1"], summary(5000, 0.01, 64), runs["gateway_max"]
    ) | {"jwt": figs}
    assert "OIDC JWT" in format_overhead(doc)
    # the bench gateway's configuration with OIDC is one the server accepts
    idp = FakeIdP.create(tmp_path / "jwks.json", algs=("RS256",))
    path = gateway_config(
        tmp_path,
        8000,
        [upstream_backend("http://127.0.0.1:1/v1")],
        ["upstream"],
        auth={"oidc": idp.oidc_config(rules=[{"claim": "groups", "value": "bench"}])},
    )
    assert load_settings(path=path).auth.oidc is not None


def test_router_replica_figures_side_by_side():
    from benchmarks.overhead import format_overhead, replica_figures

    runs = {
        "gateway_c1": summary(900, 0.0025, 1),
        "gateway_max": summary(1500, 0.02, 64),
        "gateway_r2_c1": summary(880, 0.0026, 1),
        "gateway_r2_max": summary(1700, 0.02, 64, failed=1),
    }
    figs = replica_figures(runs)
    assert list(figs) == ["1", "2"]
    assert figs["2"]["failed"] == 1 and figs["1"]["failed"] == 0
    assert figs["2"]["rps"] == runs["gateway_r2_max"]["request_throughput"]
    doc = overhead_figures(
        summary(1000, 0.001, 1), runs["gateway_c1"], summary(5000, 0.01, 64), runs["gateway_max"]
    ) | {"router_replicas": figs}
    assert "router replicas" in format_overhead(doc)
