"""Tracing in the chart: the OTLP endpoint reaches every Ray container, Serve's tracing, the collector egress rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from chart_support import Rendered, render, values_of

from serving.serve_config import serve_config
from serving.telemetry import ray_tracing_config

OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME")
TRACED = "values-h200-8b.yaml"


def _containers(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """The Ray containers (head and every worker group) by role."""
    cluster = rendered.one("RayService")["spec"]["rayClusterConfig"]
    containers = {"head": cluster["headGroupSpec"]["template"]["spec"]["containers"][0]}
    for group in cluster["workerGroupSpecs"]:
        containers[f"worker:{group['groupName']}"] = group["template"]["spec"]["containers"][0]
    return containers


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _serve_v2(rendered: Rendered) -> dict[str, Any]:
    return yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])


def _tracing_policies(rendered: Rendered) -> list[dict[str, Any]]:
    return [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-tracing-egress")]


def _traced_values(**telemetry: object) -> dict[str, Any]:
    values = copy.deepcopy(values_of(TRACED))
    if telemetry:
        values["config"]["telemetry"] = dict(telemetry)
    return values


def test_an_example_turns_tracing_on(renders) -> None:
    assert renders[TRACED].values["tracing"]["otlpEndpoint"]
    assert not (renders["default"].values.get("tracing") or {}).get("otlpEndpoint")


def test_otel_env_in_every_ray_container_only_with_an_endpoint(rendered: Rendered) -> None:
    endpoint = (rendered.values.get("tracing") or {}).get("otlpEndpoint")
    containers = _containers(rendered)
    assert "head" in containers and any(role.startswith("worker:") for role in containers)
    for role, container in containers.items():
        env = _env(container)
        if endpoint:
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint, role
            assert env["OTEL_SERVICE_NAME"] == "sovereign-inference", role  # config telemetry.service_name default
        else:
            assert not set(OTEL_VARS) & set(env), role
    for pod in rendered.of_kind("Pod"):  # the helm test pod sends no spans
        assert not any(e["name"].startswith("OTEL_") for c in pod["spec"]["containers"] for e in c.get("env", []))


def test_serve_tracing_config_only_with_an_endpoint(rendered: Rendered) -> None:
    serve = _serve_v2(rendered)
    if (rendered.values.get("tracing") or {}).get("otlpEndpoint"):
        assert serve["tracing_config"] == ray_tracing_config(1.0)
        from ray.serve.schema import ServeDeploySchema

        ServeDeploySchema.model_validate(serve)  # Ray accepts the chart's document (the ratio renders as `1`)
    else:
        assert "tracing_config" not in serve


def test_sampling_ratio_and_service_name_come_from_the_config(generate) -> None:
    """A ratio of 0 stays 0 (not Helm's `default`-to-1), other ratios pass through; the service name follows."""
    for ratio in (0, 0.25):
        rendered = render(
            generate, f"ratio-{ratio}", _traced_values(service_name="sov-prod", trace_sampling_ratio=ratio)
        )
        serve = _serve_v2(rendered)
        assert serve["tracing_config"]["sampling_ratio"] == ratio
        assert serve == serve_config(
            serve["applications"][0]["args"]["config"], tracing=True, proxy_location=serve["proxy_location"]
        )
        for role, container in _containers(rendered).items():
            assert _env(container)["OTEL_SERVICE_NAME"] == "sov-prod", role


def test_collector_egress_from_every_ray_pod_on_its_port_only(renders) -> None:
    rendered = renders[TRACED]
    tracing = rendered.values["tracing"]
    (policy,) = _tracing_policies(rendered)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec
    assert spec["egress"] == [
        {"to": tracing["collectorPeers"], "ports": [{"protocol": "TCP", "port": tracing["collectorPort"]}]}
    ]
    selector = spec["podSelector"]
    cluster = rendered.one("RayService")["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    (expression,) = selector["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/component" and expression["operator"] == "In"
    for template in templates:
        labels = template["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        assert labels[expression["key"]] in expression["values"]
    for pod in rendered.of_kind("Pod"):  # the helm test pod is not a Ray pod
        assert pod["metadata"]["labels"][expression["key"]] not in expression["values"]


def test_no_collector_egress_without_an_endpoint_or_without_policies(generate, renders) -> None:
    for name, rendered in renders.items():
        if not (rendered.values.get("tracing") or {}).get("otlpEndpoint"):
            assert _tracing_policies(rendered) == [], name
    values = _traced_values()
    values["networkPolicy"]["enabled"] = False
    values["tracing"]["collectorPeers"] = []  # nothing to open when nothing is closed
    rendered = render(generate, "no-policies", values)
    assert rendered.of_kind("NetworkPolicy") == []
    assert all(_env(c)["OTEL_EXPORTER_OTLP_ENDPOINT"] for c in _containers(rendered).values())


def test_endpoint_without_collector_peers_fails_readably(generate) -> None:
    """With network policies on, spans to an unlisted collector would be dropped silently: refuse to render."""
    import helm_python as helm

    values = _traced_values()
    values["tracing"]["collectorPeers"] = []
    with pytest.raises(helm.HelmError, match=r"tracing\.collectorPeers is empty") as caught:
        generate.render_chart(values)
    assert values["tracing"]["otlpEndpoint"] in str(caught.value)


def test_every_ray_container_runs_serve_throughput_optimized(rendered: Rendered) -> None:
    """The same Ray Serve mode as `sovereign serve` (measured there); on by default, and in every pod alike."""
    expected = "1" if (rendered.values.get("serve") or {}).get("throughputOptimized", True) else None
    for role, container in _containers(rendered).items():
        assert _env(container).get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == expected, role
        # ...with request logs unbuffered (that mode would hold 1,000 lines in memory)
        assert _env(container).get("RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE") == expected, role


@pytest.mark.parametrize(
    ("endpoint", "port", "ok"),
    [
        ("http://otel-collector.observability:4318", 4318, True),
        ("http://otel-collector.observability:4318", 4317, False),
        ("http://otel-collector.observability", 80, True),
        ("https://otel-collector.observability", 443, True),
        ("https://otel-collector.observability", 4318, False),
    ],
)
def test_collector_port_must_be_the_endpoints_port(generate, endpoint: str, port: int, ok: bool) -> None:
    """The egress policy opens collectorPort; a different port in the endpoint would drop every span silently."""
    import helm_python as helm

    values = _traced_values()
    values["tracing"].update(otlpEndpoint=endpoint, collectorPort=port)
    if ok:
        (policy,) = _tracing_policies(render(generate, "port", values))
        assert policy["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": port}]
    else:
        with pytest.raises(helm.HelmError, match=r"tracing\.collectorPort is \d+ but tracing\.otlpEndpoint"):
            generate.render_chart(values)
