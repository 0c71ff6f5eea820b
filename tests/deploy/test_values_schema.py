"""values.schema.json rejects nonsense with a readable error naming the offending value."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from chart_support import values_of

Mutation = Callable[[dict[str, Any]], object]


def _backend(index: int, key: str, value: object) -> Mutation:
    return lambda v: v["config"]["backends"][index].__setitem__(key, value)


CASES: list[tuple[str, Mutation, list[str]]] = [
    (
        "unknown level",
        _backend(0, "max_classification", "ULTRA SECRET"),
        ["/config/backends/0/max_classification", "OFFICIAL-SENSITIVE"],
    ),
    ("level in wrong case", _backend(0, "max_classification", "secret"), ["/config/backends/0/max_classification"]),
    (
        "non-sovereign above OFFICIAL",
        _backend(1, "max_classification", "SECRET"),
        ["/config/backends/1/max_classification", "'OFFICIAL'"],
    ),
    (
        "non-sovereign by default above OFFICIAL",
        lambda v: (
            v["config"]["backends"][1].pop("sovereign"),
            v["config"]["backends"][1].update(max_classification="OFFICIAL-SENSITIVE"),
        ),
        ["/config/backends/1/max_classification"],
    ),
    ("vllm backend not sovereign", _backend(0, "sovereign", False), ["/config/backends/0/sovereign"]),
    (
        "missing weights location",
        lambda v: v["config"]["backends"][0].pop("model_source"),
        ["/config/backends/0", "model_source"],
    ),
    ("weights not verified", _backend(0, "verify_manifest", False), ["/config/backends/0/verify_manifest"]),
    ("no weights volume", lambda v: v["weights"].update(existingClaim="", volume={}), ["/weights"]),
    ("unknown backend kind", _backend(0, "kind", "tgi"), ["/config/backends/0/kind"]),
    ("typo in a config key", _backend(0, "max_clasification", "SECRET"), ["max_clasification"]),
    ("typo in a chart key", lambda v: v.__setitem__("netwrokPolicy", {}), ["netwrokPolicy"]),
    ("no models", lambda v: v["config"].__setitem__("models", []), ["/config/models"]),
    (
        "root user",
        lambda v: v.setdefault("podSecurityContext", {}).update(runAsNonRoot=False),
        ["/podSecurityContext/runAsNonRoot"],
    ),
    (
        "bad egress CIDR",
        lambda v: v["networkPolicy"]["routerEgress"].append({"cidr": "llm.example.com"}),
        ["/networkPolicy/routerEgress/1/cidr"],
    ),
    (
        "tracing endpoint not a URL",
        lambda v: v["tracing"].update(otlpEndpoint="otel-collector:4318"),
        ["/tracing/otlpEndpoint"],
    ),
    ("typo in a tracing key", lambda v: v["tracing"].__setitem__("collectorPeer", []), ["collectorPeer"]),
]


@pytest.mark.parametrize(("label", "mutate", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_schema_rejects(generate, label: str, mutate: Mutation, fragments: list[str]) -> None:
    import helm_python as helm

    values = copy.deepcopy(values_of("values-h200-8b.yaml"))
    mutate(values)
    with pytest.raises(helm.HelmValuesError) as caught:
        generate.render_chart(values)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, (label, message)


def test_model_source_outside_weights_volume_fails_readably(generate) -> None:
    import helm_python as helm

    values = values_of("values-h200-8b.yaml")
    values["config"]["backends"][0]["model_source"] = "/data/llama"
    with pytest.raises(helm.HelmError, match=r"must lie inside weights.mountPath"):
        generate.render_chart(values)


def test_schema_accepts_every_example_and_the_defaults(renders) -> None:
    assert set(renders) == {"default", "values-h200-8b.yaml", "values-8gpu-70b.yaml", "values-cpu-dev.yaml"}
