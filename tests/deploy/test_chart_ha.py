"""High availability in the chart: a PodDisruptionBudget that lets a drain proceed, Ray token authentication (on by
default), and GCS fault tolerance with an external Redis/Valkey when asked for; every variant still valid against
the KubeRay CRDs and with its NetworkPolicy."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from chart_support import KubeRayCRDs, Rendered, render, values_of

REDIS = {
    "enabled": True,
    "redisAddress": "valkey.sovereign-state:6380",
    "passwordSecret": {"name": "gcs-redis", "key": "password"},
    "redisPeers": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sovereign-state"}},
            "podSelector": {"matchLabels": {"app": "valkey"}},
        }
    ],
}


def _values(**overrides: Any) -> dict[str, Any]:
    values = copy.deepcopy(values_of("values-h200-8b.yaml"))
    values.update(copy.deepcopy(overrides))
    return values


def _cluster(rendered: Rendered) -> dict[str, Any]:
    return rendered.one("RayService")["spec"]["rayClusterConfig"]


def test_the_router_pdb_allows_a_drain(rendered: Rendered) -> None:
    if not (rendered.values.get("podDisruptionBudget") or {}).get("enabled", True):
        pytest.skip("no PodDisruptionBudget in these values")
    (pdb,) = rendered.of_kind("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]


def test_min_available_still_overrides(generate) -> None:
    values = _values(podDisruptionBudget={"enabled": True, "minAvailable": 2})
    (pdb,) = render(generate, "pdb", values).of_kind("PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 2, "selector": pdb["spec"]["selector"]}


def test_ray_token_auth_is_on_by_default_and_can_be_turned_off(
    generate, rendered: Rendered, kuberay: KubeRayCRDs
) -> None:
    assert _cluster(rendered)["authOptions"] == {"mode": "token"}
    named = render(generate, "auth-secret", _values(rayAuth={"enabled": True, "secretName": "ray-token"}))
    assert _cluster(named)["authOptions"] == {"mode": "token", "secretName": "ray-token"}
    kuberay.check(named)
    off = render(generate, "auth-off", _values(rayAuth={"enabled": False}))
    assert "authOptions" not in _cluster(off)


def test_gcs_fault_tolerance_is_off_by_default(rendered: Rendered) -> None:
    assert "gcsFaultToleranceOptions" not in _cluster(rendered)
    assert not [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-gcs-redis-egress")]


def test_gcs_fault_tolerance_with_an_external_redis(generate, kuberay: KubeRayCRDs) -> None:
    rendered = render(generate, "gcs-ft", _values(gcsFaultTolerance=REDIS))
    kuberay.check(rendered)
    assert _cluster(rendered)["gcsFaultToleranceOptions"] == {
        "redisAddress": "valkey.sovereign-state:6380",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "gcs-redis", "key": "password"}}},
    }
    # The head alone may reach the Redis, on its port only.
    (policy,) = [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-gcs-redis-egress")]
    assert policy["spec"]["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    (rule,) = policy["spec"]["egress"]
    assert rule["to"] == REDIS["redisPeers"] and rule["ports"] == [{"protocol": "TCP", "port": 6380}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"redisAddress": ""}, "redisAddress"),
        ({"redisPeers": []}, "redisPeers"),
    ],
)
def test_gcs_fault_tolerance_refuses_what_could_not_work(generate, change: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        render(generate, "bad", _values(gcsFaultTolerance={**REDIS, **change}))
