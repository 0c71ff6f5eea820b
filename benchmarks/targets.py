"""Servers under test, each started as its own process (benchmarks/processes.py) and stopped cleanly: vLLM's
OpenAI server, stock Ray Serve LLM, this gateway, and the fake upstream."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.processes import REPO_ROOT, ServerError, start_process, stop_process, wait_ready
from models.registry import OFFLINE_ENV
from serving.config import VLLMBackendConfig
from serving.ports import free_port

SERVED_MODEL = "default"
RAY_METRICS_LAG_S = 12.0  # Ray's metrics agent exports what the engines recorded every 10 s (its default)


@dataclass
class Target:
    """A running server: where to send requests, and how to stop it."""

    name: str
    base_url: str
    model: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    metrics_url: str | None = None  # where the engine's own (vLLM's) metrics are served, if anywhere
    metrics_lag_s: float = 0.0  # how far that endpoint lags the engine

    def stop(self, grace_s: float = 60.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s)
            self.proc = None


# ---------------------------------------------------------------------------------------------------------
# Engine settings shared by every target.


def engine_backend(
    model_source: Path,
    *,
    dtype: str = "bfloat16",
    max_model_len: int = 2048,
    max_num_seqs: int = 64,
    cpu_threads: int | None = None,
    accelerator: str = "cpu",
    tensor_parallel_size: int = 1,
    extra: dict[str, Any] | None = None,
) -> VLLMBackendConfig:
    """The one engine description every target is started from, in the gateway's own schema."""
    return VLLMBackendConfig(
        name="local",
        kind="vllm",
        model_source=model_source,
        served_model_name=SERVED_MODEL,
        accelerator=accelerator,
        cpu_threads=cpu_threads,
        engine={
            "dtype": dtype,
            "max_model_len": max_model_len,
            "max_num_seqs": max_num_seqs,
            "tensor_parallel_size": tensor_parallel_size,
            "extra": extra or {},
        },
    )


def engine_env(backend: VLLMBackendConfig) -> dict[str, str]:
    """Environment the engine runs with, identical for every target (threads, CPU KV cache, offline)."""
    env = dict(OFFLINE_ENV)
    if backend.accelerator == "cpu":
        env["OMP_NUM_THREADS"] = str(backend.cpu_threads or os.cpu_count() or 1)
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


def vllm_server_args(backend: VLLMBackendConfig) -> list[str]:
    """vLLM CLI flags equal to the engine arguments the gateway passes to Ray Serve LLM (``engine_arguments``)."""
    from serving.app import engine_arguments

    args = ["--model", str(backend.model_source), "--served-model-name", backend.served_model_name or SERVED_MODEL]
    for key, value in engine_arguments(backend).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not False and value is not None:
            args += [flag, json.dumps(value) if isinstance(value, dict | list) else str(value)]
    return args


# ---------------------------------------------------------------------------------------------------------
# The targets.


def start_vllm(
    backend: VLLMBackendConfig, workdir: Path, ready_timeout_s: float = 900.0, hog: Path | None = None
) -> Target:
    """vLLM's own OpenAI server (``python -m vllm.entrypoints.openai.api_server``; the console script is broken
    under vllm-cpu)."""
    port = free_port()
    log = workdir / "vllm.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = start_process(cmd + vllm_server_args(backend), log, engine_env(backend), hog=hog)
    target = Target("vllm", f"http://127.0.0.1:{port}/v1", SERVED_MODEL, proc, log)
    target.metrics_url = f"http://127.0.0.1:{port}/metrics"
    _ready_or_stop(target, f"http://127.0.0.1:{port}/health", ready_timeout_s)
    return target


def start_ray_serve_llm(
    backend: VLLMBackendConfig, workdir: Path, ready_timeout_s: float = 900.0, hog: Path | None = None
) -> Target:
    """Stock Ray Serve LLM (``build_openai_app``) with the gateway's own ``LLMConfig`` for this engine."""
    port = free_port()
    log = workdir / "ray_serve_llm.log"
    spec = workdir / "ray_serve_llm_backend.yaml"
    spec.write_text(yaml.safe_dump(backend.model_dump(mode="json")))
    ready = workdir / "ray_serve_llm.ready"
    ready.unlink(missing_ok=True)
    metrics_port = free_port()
    cmd = [sys.executable, "-m", "benchmarks.ray_serve_llm_target", "--backend", str(spec), "--port", str(port),
           "--ready-file", str(ready), "--metrics-port", str(metrics_port)]  # fmt: skip
    proc = start_process(cmd, log, engine_env(backend), hog=hog)
    target = Target("ray_serve_llm", f"http://127.0.0.1:{port}/v1", SERVED_MODEL, proc, log)
    target.metrics_url, target.metrics_lag_s = f"http://127.0.0.1:{metrics_port}/metrics", RAY_METRICS_LAG_S
    # Serve's proxy answers /v1/models before the engine replica is up; the script marks the real moment.
    _ready_or_stop(target, f"http://127.0.0.1:{port}/v1/models", ready_timeout_s, ready_file=ready)
    return target


def sovereign_command() -> list[str]:
    return [sys.executable, "-m", "serving.cli"]


def create_api_key(keys_file: Path, caller: str = "bench") -> str:
    """A key for the bench via ``sovereign keys create`` (the key is the last line it prints), with a rate limit
    far above anything measurable: the benchmark measures the gateway, not its rate limiter."""
    out = subprocess.run(
        [
            *sovereign_command(),
            "keys",
            "create",
            "--caller",
            caller,
            "--keys-file",
            str(keys_file),
            "--rate",
            "100000000",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise ServerError(f"sovereign keys create failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return lines[-1].strip()


def gateway_config(
    workdir: Path,
    port: int,
    backends: list[dict[str, Any]],
    route: list[str],
    extra: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None,
) -> Path:
    """Write the gateway's YAML (audit on, keys file, one public model ``default``) and return its path; ``auth``
    adds settings to its ``auth`` section (OIDC, budgets)."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, **(server or {})},
        "audit": {"path": str(workdir / "audit.jsonl")},
        "auth": {"keys_file": str(workdir / "keys.json"), **(auth or {})},
        "backends": backends,
        "models": [{"name": SERVED_MODEL, "route": route}],
        **(extra or {}),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_gateway(
    workdir: Path,
    backends: list[dict[str, Any]],
    route: list[str],
    ready_timeout_s: float = 900.0,
    env: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    server: dict[str, Any] | None = None,
    name: str = "gateway",
    hog: Path | None = None,
    auth: dict[str, Any] | None = None,
) -> Target:
    """This gateway (classification and audit on) via ``sovereign serve --config``; ``server`` and ``auth`` add
    settings to those sections, ``env`` to its environment; ``hog``: see ``start_process``."""
    port, ray_metrics_port = free_port(), free_port()
    server = {"ray_metrics_port": ray_metrics_port, **(server or {})}  # the engines' vLLM metrics, through Ray
    config = gateway_config(workdir, port, backends, route, server=server, auth=auth)
    key = create_api_key(workdir / "keys.json")
    log = workdir / "gateway.log"
    proc = start_process([*sovereign_command(), "serve", "--config", str(config)], log, env, hog=hog)
    target = Target(name, f"http://127.0.0.1:{port}/v1", SERVED_MODEL, proc, log, key, dict(headers or {}))
    target.metrics_url = f"http://127.0.0.1:{server['ray_metrics_port']}/metrics"
    target.metrics_lag_s = RAY_METRICS_LAG_S
    _ready_or_stop(target, f"http://127.0.0.1:{port}/ready", ready_timeout_s)
    return target


def start_fake(workdir: Path, ready_timeout_s: float = 60.0) -> Target:
    """The fake OpenAI upstream in its own process, recording nothing (long runs)."""
    port = free_port()
    log = workdir / "fake.log"
    cmd = [sys.executable, "-m", "benchmarks.fake_openai", "--port", str(port), "--no-record"]
    proc = start_process(cmd, log)
    target = Target("fake", f"http://127.0.0.1:{port}/v1", "fake", proc, log)
    _ready_or_stop(target, f"http://127.0.0.1:{port}/v1/models", ready_timeout_s)
    return target


def _ready_or_stop(target: Target, url: str, timeout_s: float, ready_file: Path | None = None) -> None:
    try:
        wait_ready(url, target.proc, target.log_path, timeout_s, ready_file)
    except BaseException:
        target.stop(grace_s=20.0)
        raise


@contextlib.contextmanager
def running(target: Target) -> Iterator[Target]:
    try:
        yield target
    finally:
        target.stop()
