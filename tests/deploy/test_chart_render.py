"""The chart renders, lints clean, and every object is valid Kubernetes / KubeRay; the Serve config never drifts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from chart_support import ROOT, VALUES_FILES, KubeRayCRDs, Rendered, ray_templates, render, router_templates, values_of

from serving.config import load_settings
from serving.serve_config import serve_config
from tests.support.engine_metrics import dashboard_metrics, vllm_metrics

KUBE_VERSION = "1.30"


def _pod(template: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **template.get("metadata", {})},
        "spec": template["spec"],
    }


@pytest.mark.parametrize("name", VALUES_FILES)
def test_lint_has_no_errors(generate, name: str) -> None:
    import helm_python as helm

    report = helm.lint(str(ROOT / "helm"), values=values_of(name), strict=False)
    errors = [m for m in report["messages"] if m["severity"] >= 3] + report["errors"]
    assert errors == []


def test_native_objects_validate_against_kubernetes_schemas(rendered: Rendered) -> None:
    import kubernetes_validate

    for obj in rendered.objects:
        if obj["apiVersion"].startswith(("ray.io/", "monitoring.coreos.com/")):
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    service = rendered.one("RayService")
    spec = service["spec"]["rayClusterConfig"]
    # The pod templates and the API Service inside the RayService are checked as the objects KubeRay makes of them.
    kubernetes_validate.validate(_pod(spec["headGroupSpec"]["template"], "head"), KUBE_VERSION, strict=True)
    for group in spec["workerGroupSpecs"]:
        kubernetes_validate.validate(_pod(group["template"], group["groupName"]), KUBE_VERSION, strict=True)
    api = service["spec"]["serveService"]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Service", **api}, KUBE_VERSION, strict=True)


def test_rayservice_and_raycluster_validate_against_kuberay_crds(rendered: Rendered, kuberay: KubeRayCRDs) -> None:
    kuberay.check(rendered)


def test_servicemonitor_is_well_formed(generate, renders) -> None:
    """Prometheus scrapes the router's own metrics listener and Ray's on every router pod, never the API port: one
    port per router replica, that is one per router pod (the example runs two pods), or N on the head."""
    rendered = renders["values-h200-8b.yaml"]
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"router-metrics-0", "ray-metrics"}
    services = rendered.of_kind("Service")
    metrics = [
        s
        for s in services
        if s["metadata"]["name"].endswith("-metrics") and not s["metadata"]["name"].endswith("-engine-metrics")
    ]
    assert metrics and monitor["spec"]["selector"]["matchLabels"].items() <= metrics[0]["metadata"]["labels"].items()
    (router,) = router_templates(rendered).values()
    assert metrics[0]["spec"]["selector"].items() <= router["metadata"]["labels"].items()
    for role, template in ray_templates(rendered).items():  # the router pods only: not the head, not the engines
        if template is not router:
            assert not metrics[0]["spec"]["selector"].items() <= template["metadata"]["labels"].items(), role
    ports = {p["name"]: p for p in metrics[0]["spec"]["ports"]}
    assert ports["router-metrics-0"]["targetPort"] == 9464 and "router-metrics-1" not in ports
    # With the router on the head, its replicas take one port each.
    values = values_of("values-h200-8b.yaml")
    values["routerGroup"] = {"enabled": False}
    values["config"]["server"]["ingress_replicas"] = 2
    values["audit"] = {"persistence": {"accessModes": ["ReadWriteOnce"]}}
    on_head = render(generate, "router-on-head", values)
    assert {e["port"] for e in on_head.one("ServiceMonitor")["spec"]["endpoints"]} == {
        "router-metrics-0",
        "router-metrics-1",
        "ray-metrics",
    }
    api_port = _configmap_config(rendered)["server"]["port"]
    assert api_port not in {p["port"] for p in ports.values()} | {p["targetPort"] for p in ports.values()}
    assert "serve" not in {p["targetPort"] for p in ports.values()}


def test_router_metrics_listen_on_the_pod_for_prometheus(rendered: Rendered) -> None:
    """The chart sets the listener's address (loopback by default, which Prometheus could not reach)."""
    server = load_settings(data=_configmap_config(rendered)).server
    assert server.metrics_host == "0.0.0.0" and server.metrics_port == 9464
    assert server.api_docs == "authenticated"
    for role, template in router_templates(rendered).items():
        assert 9464 in {p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}, role
    for role, template in ray_templates(rendered).items():  # wherever Serve starts a proxy
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == "serving.http_edge:serve_http_middlewares", role


def _serve_v2(rendered: Rendered) -> dict[str, Any]:
    return yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])


def _configmap_config(rendered: Rendered) -> dict[str, Any]:
    (cm,) = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-config")]
    return yaml.safe_load(cm["data"]["config.yaml"])


def test_serve_config_v2_is_what_serve_config_builds(generate, rendered: Rendered) -> None:
    config = _configmap_config(rendered)
    runtime_env = (rendered.values.get("serve") or {}).get("runtimeEnv") or None
    tracing = bool((rendered.values.get("tracing") or {}).get("otlpEndpoint"))
    assert _serve_v2(rendered) == serve_config(
        config, proxy_location=generate.proxy_location(rendered.values), runtime_env=runtime_env, tracing=tracing
    )


def test_rendered_config_is_valid_and_points_at_the_mounts(rendered: Rendered) -> None:
    config = _serve_v2(rendered)["applications"][0]["args"]["config"]
    assert config == _configmap_config(rendered)
    settings = load_settings(data=config)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.ingress_ray_resources == {"sovereign-router": 1}
    assert str(settings.audit.path).startswith("/var/lib/sovereign/audit/")
    for backend in settings.backends:
        if backend.kind == "vllm":
            assert str(backend.model_source).startswith("/models/")
            assert backend.verify_manifest


def test_generated_files_are_up_to_date(generate) -> None:
    """values.schema.json, deploy/serve/*.serve.yaml and the dashboard copy match their sources."""
    assert [str(p.relative_to(ROOT)) for p in generate.stale_files()] == []


def test_engine_metrics_are_scraped_on_the_model_hosts(renders) -> None:
    """The engines' vLLM metrics are exported by Ray on the node that runs each engine replica: the model hosts'
    port 8080 is behind a Service the ServiceMonitor selects, under the port name it scrapes."""
    rendered = renders["values-h200-8b.yaml"]
    monitor = rendered.one("ServiceMonitor")
    (engines,) = [s for s in rendered.of_kind("Service") if s["metadata"]["name"].endswith("-engine-metrics")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= engines["metadata"]["labels"].items()
    assert engines["spec"]["selector"]["app.kubernetes.io/component"] == "model-host"
    assert [(p["name"], p["port"], p["targetPort"]) for p in engines["spec"]["ports"]] == [
        ("ray-metrics", 8080, "metrics")
    ]
    assert "ray-metrics" in {e["port"] for e in monitor["spec"]["endpoints"]}
    workers = rendered.one("RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    for group in workers:
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
        ports = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
        assert ports["metrics"] == 8080


def test_engine_dashboard_names_only_vllm_metrics_that_exist(rendered: Rendered) -> None:
    """Every metric the engines' dashboard reads is one the installed vLLM exports through Ray (vllm_metrics)."""
    canonical = (ROOT / "helm" / "dashboards" / "sovereign-engines-dashboard.json").read_text()
    assert (ROOT / "deploy" / "grafana" / "sovereign-engines-dashboard.json").read_text() == canonical
    dashboard = json.loads(canonical)
    exported = vllm_metrics()
    named = dashboard_metrics(dashboard)
    assert named and named <= exported, sorted(named - exported)
    for metric in (
        "ray_vllm_kv_cache_usage_perc",
        "ray_vllm_num_requests_running",
        "ray_vllm_num_requests_waiting",
        "ray_vllm_prefix_cache_hits_total",
        "ray_vllm_prefix_cache_queries_total",
        "ray_vllm_time_to_first_token_seconds_bucket",
        "ray_vllm_inter_token_latency_seconds_bucket",
    ):
        assert metric in named, metric
    dashboards = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    if (rendered.values.get("dashboard") or {}).get("enabled"):
        assert json.loads(dashboards[0]["data"]["sovereign-engines-dashboard.json"]) == dashboard


def test_dashboard_copy_and_metrics(rendered: Rendered) -> None:
    canonical = (ROOT / "helm" / "dashboards" / "sovereign-dashboard.json").read_text()
    assert (ROOT / "deploy" / "grafana" / "sovereign-dashboard.json").read_text() == canonical
    text = json.dumps(json.loads(canonical))
    for metric in (
        "sovereign_requests_total",
        "sovereign_commercial_egress_total",
        "sovereign_fallbacks_total",
        "sovereign_overflows_total",
        "sovereign_classification_seconds",
        "sovereign_ttft_seconds",
        "sovereign_itl_seconds",
        "sovereign_request_seconds",
        "sovereign_local_queue_depth",
        "sovereign_audit_write_seconds",
        "sovereign_audit_failures_total",
    ):
        assert metric in text, metric
    dashboards = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    if (rendered.values.get("dashboard") or {}).get("enabled"):
        assert json.loads(dashboards[0]["data"]["sovereign-dashboard.json"]) == json.loads(canonical)
    else:
        assert dashboards == []


def test_gpu_engines_fit_a_worker_group(rendered: Rendered) -> None:
    """Each GPU engine's tensor x pipeline parallel size fits on one pod of some worker group."""
    config = load_settings(data=_configmap_config(rendered))
    service = rendered.one("RayService")["spec"]["rayClusterConfig"]
    gpus = [
        int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
        for g in service["workerGroupSpecs"]
    ]
    for backend in config.backends:
        if backend.kind == "vllm" and backend.accelerator == "gpu":
            need = backend.engine.tensor_parallel_size * backend.engine.pipeline_parallel_size
            assert any(n >= need for n in gpus), (backend.name, need, gpus)


def test_helm_test_pod_calls_ready(rendered: Rendered) -> None:
    (pod,) = [p for p in rendered.of_kind("Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    script = pod["spec"]["containers"][0]["command"][-1]
    api = rendered.one("RayService")["spec"]["serveService"]["metadata"]["name"]
    assert f"http://{api}:" in script and "/ready" in script


def test_old_cluster_outlives_the_drain_timeout_after_an_upgrade(generate, renders) -> None:
    """KubeRay deletes the old cluster 60 s after traffic moves to the new one; a longer drain_timeout_s must keep
    it up until streams in flight can have finished (only then, so the default needs no newer KubeRay)."""
    assert "rayClusterDeletionDelaySeconds" not in renders["default"].one("RayService")["spec"]
    h200 = renders["values-h200-8b.yaml"]
    assert h200.values["config"]["server"]["drain_timeout_s"] == 120
    assert h200.one("RayService")["spec"]["rayClusterDeletionDelaySeconds"] == 130
    values = values_of("default")
    values.setdefault("config", {}).setdefault("server", {})["drain_timeout_s"] = 50
    assert "rayClusterDeletionDelaySeconds" not in render(generate, "d50", values).one("RayService")["spec"]
    values["config"]["server"]["drain_timeout_s"] = 90.5
    assert render(generate, "d90", values).one("RayService")["spec"]["rayClusterDeletionDelaySeconds"] == 101
