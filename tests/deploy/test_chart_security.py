"""Security properties of what the chart renders: egress isolation, least privilege, no secret values."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from chart_support import Rendered, has_router_group, model_host_templates, render, router_templates, values_of

RELEASE_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


def _pod_specs(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """Every pod template the release creates (directly or through KubeRay), by role."""
    cluster = rendered.one("RayService")["spec"]["rayClusterConfig"]
    pods = {"head": cluster["headGroupSpec"]["template"]}
    for group in cluster["workerGroupSpecs"]:
        pods[f"worker:{group['groupName']}"] = group["template"]
    for pod in rendered.of_kind("Pod"):
        pods[f"pod:{pod['metadata']['name']}"] = pod
    return pods


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only matchLabels and `In` expressions are used"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return selector.get("matchLabels", {}).items() <= labels.items()


def _policies_for(rendered: Rendered, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [p for p in rendered.of_kind("NetworkPolicy") if _selects(p, labels)]


def _release_labels(rendered: Rendered) -> dict[str, str]:
    head = _pod_specs(rendered)["head"]["metadata"]["labels"]
    return {k: head[k] for k in RELEASE_KEYS}


def test_default_deny_selects_every_pod(rendered: Rendered) -> None:
    (deny,) = [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-default-deny")]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for role, pod in _pod_specs(rendered).items():
        assert _selects(deny, pod["metadata"]["labels"]), role


def test_model_hosts_have_no_egress_outside_the_release(rendered: Rendered) -> None:
    """Worker pods (local models) may reach only pods of the release, cluster DNS on port 53 and, with tracing, the
    OpenTelemetry collector's peers on its port."""
    release = _release_labels(rendered)
    tracing = rendered.values.get("tracing") or {}
    workers = model_host_templates(rendered)
    assert workers, "every example has at least one worker group (model host)"
    for role, pod in workers.items():
        policies = _policies_for(rendered, pod["metadata"]["labels"])
        assert any(p["metadata"]["name"].endswith("-default-deny") for p in policies), role
        for policy in policies:
            if policy["metadata"]["name"].endswith("-tracing-egress"):
                assert tracing.get("otlpEndpoint"), role
                (rule,) = policy["spec"]["egress"]
                assert rule["to"] == tracing["collectorPeers"], role
                assert rule["ports"] == [{"protocol": "TCP", "port": tracing.get("collectorPort", 4318)}], role
                continue
            for rule in policy["spec"].get("egress", []):
                for peer in rule["to"]:
                    assert "ipBlock" not in peer, (role, policy["metadata"]["name"])
                    if "namespaceSelector" in peer:  # only cluster DNS, only port 53
                        assert {p["port"] for p in rule["ports"]} == {53}, role
                    else:
                        assert peer["podSelector"]["matchLabels"] == release, role


def test_only_the_router_reaches_the_commercial_endpoint(renders) -> None:
    """The commercial endpoint (and the SIEM, listed beside it) from the router pods alone: not the head (the control
    plane), not the model hosts; the head alone reaches the Kubernetes API (the autoscaler sidecar)."""
    rendered = renders["values-h200-8b.yaml"]
    cidrs = {r["cidr"] for r in rendered.values["networkPolicy"]["routerEgress"]}
    pods = _pod_specs(rendered)
    routers = router_templates(rendered)
    assert list(routers) == ["worker:routers"]
    (egress,) = [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-router-egress")]
    allowed = {peer["ipBlock"]["cidr"] for rule in egress["spec"]["egress"] for peer in rule["to"]}
    assert allowed == cidrs
    for role, pod in pods.items():
        assert _selects(egress, pod["metadata"]["labels"]) == (role in routers), role
    (api_server,) = [
        p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-autoscaler-egress")
    ]
    assert {peer["ipBlock"]["cidr"] for rule in api_server["spec"]["egress"] for peer in rule["to"]} == set(
        rendered.values["networkPolicy"]["kubeApiServer"]["cidrs"]
    )
    for role, pod in pods.items():
        assert _selects(api_server, pod["metadata"]["labels"]) == (role == "head"), role


def test_metrics_scrapers_reach_the_metrics_ports_not_the_api(renders) -> None:
    """Prometheus may reach the router's metrics listeners and Ray's metrics; it is not an API client."""
    rendered = renders["values-h200-8b.yaml"]
    scrapers = rendered.values["networkPolicy"]["metricsScrapers"]
    (router,) = [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-router-ingress")]
    (rule,) = [r for r in router["spec"]["ingress"] if r["from"] == scrapers]
    assert {p["port"] for p in rule["ports"]} == {9464, 8080}  # one router replica per router pod
    config = yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])["applications"][0]["args"]["config"]
    assert config["server"]["port"] not in {p["port"] for p in rule["ports"]}


def _advertised(params: dict[str, str]) -> dict[str, float]:
    """The custom resources in rayStartParams: '"{\"sovereign-router\":1}"' (a quoted JSON string)."""
    return yaml.safe_load(yaml.safe_load(params["resources"])) if "resources" in params else {}


def test_router_is_pinned_to_the_router_pods(rendered: Rendered) -> None:
    """The ingress needs a Ray resource only the router pods advertise (one unit each, so one router replica per
    pod; or the head, with the router on it); the head has no GPUs for engines, and beside a router group no CPUs
    either (the control plane)."""
    cluster = rendered.one("RayService")["spec"]["rayClusterConfig"]
    config = yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])["applications"][0]["args"]["config"]
    (resource,) = config["server"]["ingress_ray_resources"]
    head = cluster["headGroupSpec"]["rayStartParams"]
    assert head["num-gpus"] == "0"
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    if has_router_group(rendered.values):
        assert head["num-cpus"] == "0" and resource not in _advertised(head)
        routers = groups.pop("routers")
        assert _advertised(routers["rayStartParams"]) == {resource: 1}
        assert config["server"]["ingress_replicas"] == routers["replicas"]
    else:
        assert _advertised(head)[resource] >= config["server"]["ingress_replicas"]
    for group in groups.values():
        assert resource not in _advertised(group["rayStartParams"])


def test_every_pod_runs_unprivileged_with_limits(rendered: Rendered) -> None:
    for role, pod in _pod_specs(rendered).items():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, role
        assert spec["securityContext"]["runAsUser"] != 0, role
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), role
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, role
            assert context.get("privileged", False) is False, role
            assert context["readOnlyRootFilesystem"] is True, role
            assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), role
            assert container["resources"]["requests"] and container["resources"]["limits"], role
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, role
    autoscaler = rendered.one("RayService")["spec"]["rayClusterConfig"].get("autoscalerOptions")
    if autoscaler:
        assert autoscaler["securityContext"]["allowPrivilegeEscalation"] is False
        assert autoscaler["securityContext"]["readOnlyRootFilesystem"] is True


def test_gpu_workers_request_gpus(renders) -> None:
    for name in ("default", "values-h200-8b.yaml", "values-8gpu-70b.yaml"):
        values = renders[name].values or {}
        groups = renders[name].one("RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        for group in groups:
            if group["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "router":
                continue
            container = group["template"]["spec"]["containers"][0]
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
            assert (
                container["resources"]["limits"]["nvidia.com/gpu"]
                == container["resources"]["requests"]["nvidia.com/gpu"]
            )
            assert group["template"]["spec"]["tolerations"] and group["template"]["spec"]["nodeSelector"]
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], values


def test_secrets_only_by_reference_and_only_in_the_router(rendered: Rendered) -> None:
    assert rendered.of_kind("Secret") == []
    pods = _pod_specs(rendered)
    routers = router_templates(rendered)
    for role, pod in pods.items():
        container = pod["spec"]["containers"][0]
        for env in container.get("env", []):
            if any(w in env["name"].upper() for w in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
                assert "value" not in env, (role, env["name"])
        secret_volumes = [v for v in pod["spec"].get("volumes", []) if "secret" in v]
        if role not in routers:
            assert secret_volumes == [], role
            assert not any(
                v.get("persistentVolumeClaim", {}).get("claimName", "").endswith("-audit")
                for v in pod["spec"].get("volumes", [])
            ), role


def test_secret_values_never_rendered(generate) -> None:
    """Secret names travel as references; a key value has no place in the values (the schema refuses one)."""
    import helm_python as helm

    values = values_of("values-h200-8b.yaml")
    rendered = render(generate, "refs", values)
    text = "\n".join(rendered.files.values())
    assert "openai-api-key" in text and "sovereign-api-keys" in text  # by reference only
    sentinel = "sk-SENTINEL-DO-NOT-RENDER"
    for mutate in (
        lambda v: v["config"]["backends"][1].__setitem__("api_key", sentinel),
        lambda v: v["backendSecrets"]["openai"].__setitem__("value", sentinel),
        lambda v: v["head"].__setitem__("extraEnv", [{"name": "OPENAI_API_KEY", "value": sentinel}]),
    ):
        bad = copy.deepcopy(values)
        mutate(bad)
        with pytest.raises(helm.HelmValuesError):
            generate.render_chart(bad)


def test_weights_read_only_and_audit_persistent(rendered: Rendered) -> None:
    pods = _pod_specs(rendered)
    for role, pod in pods.items():
        if role.startswith("pod:"):
            continue
        mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["weights"]["readOnly"] is True, role
        weights = next(v for v in pod["spec"]["volumes"] if v["name"] == "weights")
        if "persistentVolumeClaim" in weights:
            assert weights["persistentVolumeClaim"]["readOnly"] is True
    (router,) = router_templates(rendered).values()
    claim = {v["name"]: v for v in router["spec"]["volumes"]}["audit"]["persistentVolumeClaim"]["claimName"]
    pvcs = rendered.of_kind("PersistentVolumeClaim")
    assert [p["metadata"]["name"] for p in pvcs] == [claim]
    assert pvcs[0]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_router_pdb_and_api_service(rendered: Rendered) -> None:
    pods = _pod_specs(rendered)
    routers = router_templates(rendered)
    pdbs = rendered.of_kind("PodDisruptionBudget")
    if (rendered.values.get("podDisruptionBudget") or {}).get("enabled", True):
        (pdb,) = pdbs
        for role, pod in pods.items():
            assert (pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()) == (
                role in routers
            ), role
    api = rendered.one("RayService")["spec"]["serveService"]
    # KubeRay sets the selector; the named target port, which only router pods declare, keeps the others out.
    assert api["spec"]["ports"][0]["targetPort"] == "serve"
    for role, pod in pods.items():
        ports = pod["spec"]["containers"][0].get("ports", [])
        assert any(p["name"] == "serve" and p["containerPort"] == 8000 for p in ports) == (role in routers), role
    for ingress in rendered.of_kind("Ingress"):
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == api["metadata"]["name"]
