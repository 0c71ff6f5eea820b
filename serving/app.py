"""The Ray Serve application: one ``LLMServer`` deployment per local model, and the router ingress in front.

``build_app`` is a Ray Serve application builder, so the same code runs under ``sovereign serve``, ``serve deploy``
on a VM cluster, and KubeRay's ``serveConfigV2`` (``import_path: serving.app:build_app``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, cast

from ray import serve
from ray.serve import Deployment
from ray.serve.handle import DeploymentHandle

from models.manifest import verify_manifest
from models.registry import OFFLINE_ENV
from serving.config import (
    AdapterBackendConfig,
    OpenAIBackendConfig,
    Settings,
    VLLMBackendConfig,
    dump_settings,
    load_settings,
)
from serving.engine import SMOOTH_STREAMS_KEY, VERIFY_KEY, sovereign_server_cls
from serving.lora import ADAPTERS_DIR_KEY, multiplexed_model_id

log = logging.getLogger("sovereign.app")

INGRESS_NAME = "ingress"
ENGINE_PREFIX = "engine-"
# Ray Serve LLM's prefix-cache-affinity request router (backends[].request_router: prefix_aware). Its prefix tree
# (an actor) keeps at most about this many characters of prompts, evicting the oldest beyond.
PREFIX_AWARE_ROUTER = "ray.serve.llm.request_router:PrefixCacheAffinityRouter"
PREFIX_TREE_MAX_CHARS = 400_000


def engine_deployment_name(backend: VLLMBackendConfig) -> str:
    return f"{ENGINE_PREFIX}{backend.name}"


def served_model_name(backend: VLLMBackendConfig) -> str:
    return backend.served_model_name or backend.name


def engine_arguments(backend: VLLMBackendConfig) -> dict[str, Any]:
    """vLLM's engine (and front-end) arguments for one local backend: what the app gives Ray Serve LLM, and what the
    benchmarks give plain vLLM as command-line flags (benchmarks/targets.py), so both run the same engine."""
    engine = backend.engine
    return {
        "dtype": engine.dtype,
        "max_model_len": engine.max_model_len,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "pipeline_parallel_size": engine.pipeline_parallel_size,
        "enforce_eager": engine.enforce_eager,
        **({"max_num_seqs": engine.max_num_seqs} if engine.max_num_seqs else {}),
        **({"gpu_memory_utilization": engine.gpu_memory_utilization} if backend.accelerator == "gpu" else {}),
        **({"runner": "pooling"} if backend.task == "embed" else {}),
        **engine.tool_kwargs(),
        # vLLM's automatic prefix caching: what prefix-aware routing aims at (vLLM's default for generation).
        **({"enable_prefix_caching": True} if backend.accelerator == "gpu" and backend.task == "generate" else {}),
        # LoRA adapters (backends of kind `adapter` on this one), loaded on demand by Serve's multiplexing.
        **(
            {
                "enable_lora": True,
                "max_loras": backend.lora.max_adapters_per_replica,
                "max_lora_rank": backend.lora.max_lora_rank,
            }
            if backend.lora is not None
            else {}
        ),
        **engine.extra,
    }


def llm_config(backend: VLLMBackendConfig) -> Any:
    """Translate one local backend into Ray Serve LLM's ``LLMConfig`` (engine arguments pass straight through)."""
    from ray.serve.llm import LLMConfig

    engine_kwargs = engine_arguments(backend)
    env_vars: dict[str, str] = {**OFFLINE_ENV, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
    if backend.store_responses:  # vLLM's in-memory Responses API store (see the setting's description)
        env_vars["VLLM_ENABLE_RESPONSES_API_STORE"] = "1"
    otlp = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if otlp:  # vLLM's request spans join the router's trace (it reads `traceparent` from the forwarded headers)
        env_vars["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
        # vLLM's exporter speaks gRPC unless told otherwise; the router and Serve speak OTLP/HTTP to the same URL.
        env_vars["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"
        )
        engine_kwargs.setdefault("otlp_traces_endpoint", otlp.rstrip("/") + "/v1/traces")
    if backend.accelerator == "cpu":
        threads = str(backend.cpu_threads or os.cpu_count() or 1)
        env_vars |= {
            "OMP_NUM_THREADS": threads,
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        }
    autoscaling = backend.autoscaling
    return LLMConfig(
        model_loading_config={"model_id": served_model_name(backend), "model_source": str(backend.model_source)},
        engine_kwargs=engine_kwargs,
        accelerator_config={"kind": backend.accelerator},
        runtime_env={"env_vars": env_vars},
        deployment_config={
            "name": engine_deployment_name(backend),
            "autoscaling_config": {
                "min_replicas": autoscaling.min_replicas,
                "initial_replicas": max(1, autoscaling.min_replicas),
                "max_replicas": autoscaling.max_replicas,
                "target_ongoing_requests": autoscaling.target_ongoing_requests,
            },
            # Bounded queue: sensitive traffic waits here at most this deep, then gets a fast 503.
            "max_queued_requests": max(backend.max_queue_depth * 4, 64),
            # Ray Serve LLM adds these to the replica's bundle of the engine's placement group (the first bundle).
            **({"ray_actor_options": {"resources": dict(backend.ray_resources)}} if backend.ray_resources else {}),
            **(
                {"request_router_config": request_router_config(backend)} if backend.request_router != "default" else {}
            ),
        },
        log_engine_metrics=backend.engine_metrics,
        # The adapters come from lora.adapters_dir on the engine's node (serving/lora.py), not from cloud storage.
        lora_config=(
            {"max_num_adapters_per_replica": backend.lora.max_adapters_per_replica}
            if backend.lora is not None
            else None
        ),
        experimental_configs={
            VERIFY_KEY: backend.verify_manifest,
            SMOOTH_STREAMS_KEY: backend.stream_smooth_streams,
            "stream_batching_interval_ms": backend.stream_batching_ms,
            **({ADAPTERS_DIR_KEY: str(backend.lora.adapters_dir)} if backend.lora is not None else {}),
        },
    )


def request_router_config(backend: VLLMBackendConfig) -> dict[str, Any]:
    """Serve's ``request_router_config`` for a backend whose replicas are picked by prompt prefix."""
    return {
        "request_router_class": PREFIX_AWARE_ROUTER,
        "request_router_kwargs": {
            "do_eviction": True,
            "eviction_threshold_chars": PREFIX_TREE_MAX_CHARS,
            "eviction_target_chars": PREFIX_TREE_MAX_CHARS * 9 // 10,
        },
    }


def adapter_base(settings: Settings, adapter: AdapterBackendConfig) -> VLLMBackendConfig | None:
    """The local backend whose engines serve ``adapter`` (None when it is not among ``settings.backends``)."""
    return next((b for b in settings.backends if isinstance(b, VLLMBackendConfig) and b.name == adapter.base), None)


def verify_local_weights(settings: Settings) -> None:
    """Refuse to start a model or adapter whose files do not match their manifest (raises ``ManifestError``).
    The engines verify each adapter again before loading it (serving/lora.py)."""
    for backend in settings.backends:
        if isinstance(backend, VLLMBackendConfig) and backend.verify_manifest:
            verify_manifest(Path(backend.model_source))
        elif isinstance(backend, AdapterBackendConfig):
            base = adapter_base(settings, backend)
            if base is not None and base.lora is not None and base.verify_manifest:
                verify_manifest(base.lora.adapters_dir / backend.adapter)


@serve.deployment(name=INGRESS_NAME, max_ongoing_requests=1024)
@serve.ingress()
class Ingress:
    """The router replica: holds the gateway (keys, audit writer, backends) and serves the FastAPI app."""

    def __init__(
        self, settings_data: dict[str, Any], engines: dict[str, DeploymentHandle], response_ids_key: str
    ) -> None:
        from routing.audit import AuditLog
        from routing.audit_ship import start_shipper
        from routing.keys import KeyStore, ReloadingKeyStore
        from serving.availability import EngineWatch
        from serving.backends.local import LocalBackend
        from serving.backends.openai_http import OpenAIBackend
        from serving.gateway import Gateway
        from serving.http_edge import RAY_HTTP_CALLBACK
        from serving.metrics import Metrics, serve_metrics
        from serving.response_ids import ResponseIds
        from serving.telemetry import configure_logging, configure_tracing
        from serving.thirdparty import release_reset_connections, serve_replica_states

        release_reset_connections()  # this replica's HTTP server is uvicorn, behind HAProxy
        settings = load_settings(data=settings_data)
        configure_logging(settings.telemetry.log_level)
        configure_tracing(settings.telemetry.service_name, settings.telemetry.trace_sampling_ratio)
        backends: dict[str, Any] = {}
        engine_of: dict[str, VLLMBackendConfig] = {}  # local and adapter backends -> the backend running the engine
        for b in settings.backends:
            if isinstance(b, VLLMBackendConfig):
                backends[b.name] = LocalBackend(b, engines[b.name], served_model_name(b))
                engine_of[b.name] = b
            elif isinstance(b, AdapterBackendConfig):
                base = settings.backend(b.base)
                assert isinstance(base, VLLMBackendConfig)  # the configuration checks it
                # The base's engines under the adapter's model id: Serve routes to a replica with it loaded (or
                # loads it); the adapter's own name and clearance decide routing and policy like any backend's.
                model_id = multiplexed_model_id(served_model_name(base), b.adapter)
                backends[b.name] = LocalBackend(
                    base.model_copy(update={"name": b.name, "max_classification": b.max_classification}),
                    engines[base.name].options(multiplexed_model_id=model_id),
                    model_id,
                )
                engine_of[b.name] = base
            elif isinstance(b, OpenAIBackendConfig):
                backends[b.name] = OpenAIBackend(b)
        metrics = Metrics()
        # Engines without a running replica (a lost node) are skipped rather than waited for.
        self.engine_watch = EngineWatch(
            serve.get_replica_context().app_name,
            {
                name: (engine_deployment_name(b), b.autoscaling.min_replicas, backends[name])
                for name, b in engine_of.items()
            },
            serve_replica_states,
            on_change=lambda name, up: metrics.backend_available.labels(backend=name).set(int(up)),
        ).start()
        keys = ReloadingKeyStore(settings.auth.keys_file) if settings.auth.keys_file else KeyStore.empty()
        audit = AuditLog(settings.audit.path, on_write=metrics.on_audit_write)
        # Ships the records to the SIEM and anchors the head (when configured); never blocks a request.
        self.audit_shipper = start_shipper(
            settings.audit.path,
            settings.audit.shipping,
            settings.audit.anchors,
            service_name=settings.telemetry.service_name,
            on_backlog=metrics.audit_ship_backlog.set,
            on_failure=lambda what: metrics.audit_ship_failures.labels(what=what).inc(),
            on_anchor=metrics.audit_anchor_time.set,
        )
        ledger = _shared_ledger(settings)
        self.gateway = Gateway(
            settings,
            backends,
            audit=audit,
            keys=keys,
            metrics=metrics,
            behind_serve_proxy=True,
            ledger=ledger,
            limiter=_shared_limiter(settings, ledger),
            response_ids=ResponseIds(response_ids_key),
        )
        server = settings.server
        self._metrics_server = None
        if server.metrics_port is not None:
            started = serve_metrics(
                metrics.registry, server.metrics_host, server.metrics_port, tries=server.ingress_replicas
            )
            self._metrics_server = started[0] if started else None
        if os.environ.get("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH") != RAY_HTTP_CALLBACK:
            log.warning(
                "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH is not %s: Ray Serve keeps and echoes any "
                "x-request-id a caller sends (set it on every Ray node before `ray start`)",
                RAY_HTTP_CALLBACK,
            )

    async def __del__(self) -> None:
        """Ray Serve calls this on graceful replica shutdown: the audit queue is drained, nothing is lost."""
        watch = getattr(self, "engine_watch", None)
        if watch is not None:
            watch.stop()
        gateway = getattr(self, "gateway", None)  # absent when __init__ failed: keep that error visible
        if gateway is not None:
            await gateway.close()
        shipper = getattr(self, "audit_shipper", None)
        if shipper is not None:  # after the audit log is drained: ship its last records, write a last anchor
            await asyncio.to_thread(shipper.close)
        metrics_server = getattr(self, "_metrics_server", None)
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.shutdown)
            metrics_server.server_close()

    def __serve_build_asgi_app__(self) -> Any:
        from serving.api import create_app

        return create_app(self.gateway)


def _shared_ledger(settings: Settings) -> Any:
    """The ledger every router replica of this application shares (one Ray actor): budgets, when any are
    configured, and the request-rate buckets, when there are several router replicas. None (``auth.budgets.ledger:
    local``, or nothing to share): the gateway keeps its own."""
    budgets = settings.auth.budgets
    has_budgets = bool(budgets.callers or budgets.teams or budgets.default_caller or budgets.default_team)
    if budgets.ledger == "local" or (
        budgets.ledger == "auto" and not has_budgets and settings.server.ingress_replicas == 1
    ):
        return None
    from routing.budgets import RayLedger, ledger_actor_name

    return RayLedger(name=ledger_actor_name(serve.get_replica_context().app_name))


def _shared_limiter(settings: Settings, ledger: Any) -> Any:
    """Request-rate limits drawn as leases from the shared ledger when several router replicas share them (or the
    ledger is ``ray`` by choice); None: this replica's own buckets (exact with one replica)."""
    if ledger is None or (settings.server.ingress_replicas == 1 and settings.auth.budgets.ledger == "auto"):
        return None
    from routing.ratelimit import SharedRateLimiter

    return SharedRateLimiter(ledger, settings.server.ingress_replicas)


def build_application(settings: Settings) -> Any:
    """The bound Serve application for ``settings``."""
    from ray.serve.llm import build_llm_deployment

    engines = {}
    for backend in settings.backends:
        if isinstance(backend, VLLMBackendConfig):
            engines[backend.name] = build_llm_deployment(
                llm_config(backend),
                deployment_cls=sovereign_server_cls(),
                override_serve_options={
                    "name": engine_deployment_name(backend),
                    "graceful_shutdown_timeout_s": settings.server.drain_timeout_s,
                },
            )
    ingress_options: dict[str, Any] = {
        "num_replicas": settings.server.ingress_replicas,
        "max_ongoing_requests": settings.server.max_concurrency + 16,
        "graceful_shutdown_timeout_s": settings.server.drain_timeout_s,
        "ray_actor_options": {
            "num_cpus": 0,
            **(
                {"resources": dict(settings.server.ingress_ray_resources)}
                if settings.server.ingress_ray_resources
                else {}
            ),
        },
    }
    # @serve.deployment made Ingress a Deployment; mypy does not apply class decorators.
    return (
        cast(Deployment, Ingress)
        .options(**ingress_options)
        .bind(dump_settings(settings), engines, response_ids_key(settings))
    )


def response_ids_key(settings: Settings) -> str:
    """The key every router replica signs Responses API ids with: from ``server.response_ids_key_env``, else new."""
    from serving.response_ids import new_key

    name = settings.server.response_ids_key_env
    if name is None:
        return new_key()
    key = os.environ.get(name, "")
    if len(key) < 16:
        raise ValueError(f"server.response_ids_key_env: {name} must hold a key of 16 characters or more")
    return key


def build_app(args: dict[str, Any]) -> Any:
    """Ray Serve application builder: ``args`` is ``{"config_path": FILE}`` or ``{"config": {...}}``."""
    if "config_path" in args:
        settings = load_settings(path=args["config_path"])
    else:
        settings = load_settings(data=args.get("config") or {})
    return build_application(settings)
