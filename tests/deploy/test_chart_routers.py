"""The routers in a worker group of their own (routerGroup, on by default) and the head as control plane: placement,
the API Service, the NetworkPolicies, one audit file per router pod, the PDB; still valid for KubeRay and Kubernetes."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from chart_support import (
    KubeRayCRDs,
    Rendered,
    cluster_of,
    model_host_templates,
    ray_templates,
    render,
    router_templates,
    values_of,
)

from serving.config import load_settings

EXAMPLE = "values-h200-8b.yaml"
RESOURCE = "sovereign-router"
HOSTNAME = "kubernetes.io/hostname"


def _values(name: str = EXAMPLE, **overrides: Any) -> dict[str, Any]:
    values = copy.deepcopy(values_of(name))
    for key, value in overrides.items():
        values[key] = {**(values.get(key) or {}), **copy.deepcopy(value)}
    return values


def _group(rendered: Rendered) -> dict[str, Any]:
    (group,) = [g for g in cluster_of(rendered)["workerGroupSpecs"] if g["groupName"] == "routers"]
    return group


def _config(rendered: Rendered) -> dict[str, Any]:
    return yaml.safe_load(rendered.one("RayService")["spec"]["serveConfigV2"])["applications"][0]["args"]["config"]


def _advertised(params: dict[str, str]) -> dict[str, float]:
    return yaml.safe_load(yaml.safe_load(params["resources"])) if "resources" in params else {}


def _valid(rendered: Rendered, kuberay: KubeRayCRDs) -> None:
    import kubernetes_validate

    kuberay.check(rendered)
    for template in ray_templates(rendered).values():
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": template["spec"]},
            "1.30",
            strict=True,
        )


def _anti_affinity_terms(group: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    anti = group["template"]["spec"]["affinity"]["podAntiAffinity"]
    (kind,) = anti
    terms = [t.get("podAffinityTerm", t) for t in anti[kind]]
    return kind, terms


def test_a_default_install_has_two_router_pods_spread_over_nodes(renders) -> None:
    for name in ("default", EXAMPLE, "values-8gpu-70b.yaml"):
        group = _group(renders[name])
        assert group["replicas"] >= 2 and group["minReplicas"] == group["maxReplicas"] == group["replicas"], name
        kind, (term,) = _anti_affinity_terms(group)
        assert kind == "preferredDuringSchedulingIgnoredDuringExecution", name
        assert term["topologyKey"] == HOSTNAME
        # It repels the router pods of its own RayCluster (not the old cluster's during a NewCluster upgrade).
        assert term["labelSelector"]["matchLabels"].items() <= group["template"]["metadata"]["labels"].items()
        assert term["matchLabelKeys"] == ["ray.io/cluster"]
        for role, template in ray_templates(renders[name]).items():
            if role != "worker:routers":
                assert not term["labelSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_required_anti_affinity_and_more_router_pods(generate, kuberay: KubeRayCRDs) -> None:
    rendered = render(
        generate,
        "required",
        _values(
            routerGroup={
                "replicas": 3,
                "podAntiAffinity": "required",
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "node-role/router", "operator": "Exists"}]}
                            ]
                        }
                    }
                },
            }
        ),
    )
    _valid(rendered, kuberay)
    group = _group(rendered)
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (3, 3, 3)
    kind, (term,) = _anti_affinity_terms(group)
    assert kind == "requiredDuringSchedulingIgnoredDuringExecution" and term["topologyKey"] == HOSTNAME
    assert "nodeAffinity" in group["template"]["spec"]["affinity"]  # the user's affinity is kept beside it
    assert _config(rendered)["server"]["ingress_replicas"] == 3


def test_each_router_pod_offers_one_router_unit_and_the_app_asks_for_it(rendered: Rendered) -> None:
    """One router replica per router pod: each pod advertises one unit of the resource every ingress replica needs,
    and there are as many replicas as pods, so Serve places one replica on each."""
    if not (rendered.values.get("routerGroup") or {}).get("enabled", True):
        pytest.skip("the router runs on the head in these values")
    group = _group(rendered)
    params = group["rayStartParams"]
    assert _advertised(params) == {RESOURCE: 1}
    assert params["num-cpus"] == "0" and params["num-gpus"] == "0"  # no engine replica lands on a router pod
    server = load_settings(data=_config(rendered)).server
    assert server.ingress_ray_resources == {RESOURCE: 1}
    assert server.ingress_replicas == group["replicas"]


def test_the_head_is_the_control_plane(renders) -> None:
    rendered = renders[EXAMPLE]
    spec = rendered.one("RayService")["spec"]
    head = spec["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and head["rayStartParams"]["num-gpus"] == "0"
    assert RESOURCE not in _advertised(head["rayStartParams"])
    assert head["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "control-plane"
    container = head["template"]["spec"]["containers"][0]
    assert not [p for p in container["ports"] if p["name"] == "serve" or p["name"].startswith(("serve-", "router"))]
    assert not [e for e in container["env"] if e["name"].startswith("SOVEREIGN_AUDIT")]
    assert {v["name"] for v in head["template"]["spec"]["volumes"]} == {"tmp", "dshm", "weights"}
    assert spec["excludeHeadPodFromServeSvc"] is True
    # Serve's controller still runs there: the serve config is the RayService's, proxies on every node.
    assert yaml.safe_load(spec["serveConfigV2"])["proxy_location"] == "EveryNode"


def test_the_api_service_reaches_router_pods_only(renders) -> None:
    """KubeRay sets the serve Service's selector (the serving cluster's pods with a healthy proxy, which EveryNode
    starts on engine pods too); its target port is the named port `serve`, which only router pods declare, and a pod
    without that port is no endpoint. The head is excluded outright."""
    rendered = renders[EXAMPLE]
    api = rendered.one("RayService")["spec"]["serveService"]
    assert "selector" not in api["spec"]
    assert [p["targetPort"] for p in api["spec"]["ports"]] == ["serve"]
    routers = router_templates(rendered)
    for role, template in ray_templates(rendered).items():
        names = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        serving = {n for n in names if n == "serve" or n.startswith("serve-")}  # KubeRay's serving-port names
        assert bool(serving) == (role in routers), role
    for ingress in rendered.of_kind("Ingress"):
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == api["metadata"]["name"]


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return selector.get("matchLabels", {}).items() <= labels.items()


def _open_ports_from_outside(rendered: Rendered, labels: dict[str, str]) -> set[int]:
    """Ports of a pod that some NetworkPolicy opens to a peer outside the release."""
    release = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    ports = set()
    for policy in rendered.of_kind("NetworkPolicy"):
        if not _selects(policy, labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            outside = [
                p
                for p in rule["from"]
                if p.get("podSelector", {}).get("matchLabels") != release or "namespaceSelector" in p
            ]
            if outside:
                ports |= {p["port"] for p in rule.get("ports", [])}
    return ports


def test_only_router_pods_take_api_traffic(renders) -> None:
    rendered = renders[EXAMPLE]
    api_port = _config(rendered)["server"]["port"]
    routers = router_templates(rendered)
    for role, template in ray_templates(rendered).items():
        opened = _open_ports_from_outside(rendered, template["metadata"]["labels"])
        if role in routers:
            assert opened == {api_port, 9464, 8080}, role  # API clients; scrapers on the metrics ports
        elif role == "head":
            assert opened == {8265, 52365, 8080}, role  # the KubeRay operator; scrapers on Ray's metrics
        else:
            assert opened == {8080}, role  # model hosts: Ray's metrics only
    for template in model_host_templates(rendered).values():
        assert api_port not in _open_ports_from_outside(rendered, template["metadata"]["labels"])


def test_router_on_the_head_when_asked(renders) -> None:
    """routerGroup.enabled false (the CPU development example): today's single router pod, the head."""
    rendered = renders["values-cpu-dev.yaml"]
    assert [g["groupName"] for g in cluster_of(rendered)["workerGroupSpecs"]] == ["cpu"]
    spec = rendered.one("RayService")["spec"]
    head = spec["rayClusterConfig"]["headGroupSpec"]
    assert _advertised(head["rayStartParams"])[RESOURCE] >= 1 and head["rayStartParams"]["num-cpus"] == "1"
    assert "excludeHeadPodFromServeSvc" not in spec
    assert yaml.safe_load(spec["serveConfigV2"])["proxy_location"] == "HeadOnly"
    assert list(router_templates(rendered)) == ["head"]
    opened = _open_ports_from_outside(rendered, head["template"]["metadata"]["labels"])
    assert {8000, 8265, 52365} <= opened


def _env(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in template["spec"]["containers"][0]["env"]}


def _expand(value: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in an env value."""
    return re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], value)


def test_each_router_pod_writes_its_own_audit_chain(monkeypatch, generate) -> None:
    """The hash chain is per file: each router pod's replica writes <pod name>.jsonl (its shipping cursor beside it,
    and its anchors, when they go to a file, to a file of its own); pod names carry the RayCluster's."""
    values = _values(EXAMPLE)
    values["config"]["audit"] = {"anchors": {"interval_s": 300, "path": "/var/lib/sovereign/anchors/heads.jsonl"}}
    rendered = render(generate, "anchors", values)
    (template,) = router_templates(rendered).values()
    env = _env(template)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    names = list(env)
    assert names.index("POD_NAME") < names.index("SOVEREIGN_AUDIT__PATH")  # $(POD_NAME) is defined before its use
    mounts = {m["name"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["audit"]["mountPath"] == "/var/lib/sovereign/audit" and not mounts["audit"].get("readOnly")
    seen = {}
    for pod in ("sovereign-abc12-routers-worker-x7k2p", "sovereign-abc12-routers-worker-q9m4z"):
        for name in ("SOVEREIGN_AUDIT__PATH", "SOVEREIGN_AUDIT__ANCHORS__PATH"):
            monkeypatch.setenv(name, _expand(env[name]["value"], {"POD_NAME": pod}))
        audit = load_settings(data=_config(rendered)).audit  # what the router replica on that pod loads
        assert audit.anchors is not None and audit.anchors.interval_s == 300
        seen[pod] = (str(audit.path), str(audit.anchors.path))
    assert seen == {
        pod: (f"/var/lib/sovereign/audit/{pod}.jsonl", f"/var/lib/sovereign/anchors/{pod}.heads.jsonl") for pod in seen
    }
    # Without anchors to a file, there is no anchors override (it would create an anchors section).
    (plain,) = router_templates(render(generate, "plain", _values(EXAMPLE))).values()
    assert "SOVEREIGN_AUDIT__ANCHORS__PATH" not in _env(plain)


def test_the_audit_claim_is_shared_read_write_many(generate, renders) -> None:
    import helm_python as helm

    (pvc,) = renders[EXAMPLE].of_kind("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    with pytest.raises(helm.HelmError, match=r"must be ReadWriteMany"):
        generate.render_chart(_values(EXAMPLE, audit={"persistence": {"accessModes": ["ReadWriteOnce"]}}))
    # An existing claim is the operator's to provide (ReadWriteMany): the chart creates none.
    existing = render(
        generate,
        "existing",
        _values(EXAMPLE, audit={"persistence": {"existingClaim": "audit-rwx", "accessModes": ["ReadWriteOnce"]}}),
    )
    assert existing.of_kind("PersistentVolumeClaim") == []
    (template,) = router_templates(existing).values()
    assert {v["name"]: v for v in template["spec"]["volumes"]}["audit"]["persistentVolumeClaim"] == {
        "claimName": "audit-rwx"
    }


def test_the_pdb_lets_one_router_pod_go_at_a_time(renders) -> None:
    rendered = renders[EXAMPLE]
    (pdb,) = rendered.of_kind("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    routers = router_templates(rendered)
    for role, template in ray_templates(rendered).items():
        assert (pdb["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()) == (
            role in routers
        ), role


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (lambda: _values(EXAMPLE, config={"server": {"ingress_replicas": 3}}), "routerGroup.replicas is 2"),
        (lambda: _values(EXAMPLE, serve={"proxyLocation": "HeadOnly"}), "needs EveryNode"),
        (lambda: _values(EXAMPLE, routerGroup={"name": "h200"}), "the router group's name"),
    ],
)
def test_contradictions_fail_readably(generate, values, message: str) -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=message):
        generate.render_chart(values())


@pytest.mark.parametrize(
    ("group", "fragment"),
    [
        ({"replicas": 1}, "/routerGroup/replicas"),
        ({"podAntiAffinity": "sometimes"}, "/routerGroup/podAntiAffinity"),
        ({"affinity": {"podAntiAffinity": {}}}, "/routerGroup/affinity"),
    ],
)
def test_schema_refuses_a_router_group_that_is_not_highly_available(
    generate, group: dict[str, Any], fragment: str
) -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError) as caught:
        generate.render_chart(_values(EXAMPLE, routerGroup=group))
    assert fragment in str(caught.value)
