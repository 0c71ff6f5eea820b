"""Generate the deployment files that are derived from one source, so they never drift.

- ``helm/values.schema.json``: the chart's own values (written here) plus the sovereign configuration schema taken
  from ``serving/config.py`` (pydantic), tightened with the rules pydantic checks in code (a non-sovereign backend
  is never cleared above OFFICIAL; the chart only serves weights verified against their manifest).
- ``deploy/serve/<example>.serve.yaml``: the Ray Serve config for ``serve deploy`` on a plain Ray cluster, built by
  ``serving.serve_config.serve_config`` from the configuration the chart renders for each example values file.
- ``deploy/grafana/*.json``: copies of the chart's dashboards, the router's and the engines' (Helm cannot read
  outside ``helm/``).

Run from the repository root: ``.venv/bin/python deploy/generate.py`` (``--check`` exits 1 if anything is stale).
Tests run the same check.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from routing.levels import LEVEL_LABELS, Level  # noqa: E402
from serving.config import Settings  # noqa: E402
from serving.serve_config import render_yaml, serve_config  # noqa: E402

CHART = ROOT / "helm"
SCHEMA_PATH = CHART / "values.schema.json"
DASHBOARDS = CHART / "dashboards"  # the router's (sovereign-dashboard.json) and the engines' (sovereign-engines-...)
DASHBOARD_COPIES = ROOT / "deploy" / "grafana"
SERVE_DIR = ROOT / "deploy" / "serve"
# Example values files -> the serve config generated from each (release name used for rendering).
EXAMPLES = {
    "values-h200-8b.yaml": "h200-8b.serve.yaml",
    "values-8gpu-70b.yaml": "8gpu-70b.serve.yaml",
    "values-cpu-dev.yaml": "cpu-dev.serve.yaml",
}
RELEASE = "sovereign"
NAMESPACE = "sovereign"

_K8S_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_QUANTITY = {"type": ["string", "number"]}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
    "required": ["requests", "limits"],
}
_OBJ = {"type": "object"}
_LIST = {"type": "array"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _group(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    base = {
        "rayStartParams": _STR_MAP,
        "resources": _RESOURCES,
        "tmpSize": {"type": "string"},
        "shmSize": {"type": "string"},
        "nodeSelector": _STR_MAP,
        "tolerations": _LIST,
        "affinity": _OBJ,
        "extraEnv": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "not": {"required": ["value"], "properties": {"name": {"pattern": "(?i)(key|token|secret|password)"}}},
            },
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {**base, **extra},
        "required": ["resources", "tmpSize", "shmSize", *required],
    }


def chart_schema() -> dict[str, Any]:
    """The chart's own values (everything but ``config``)."""
    return {
        "nameOverride": {"type": "string"},
        "fullnameOverride": {"type": "string"},
        "image": {
            "type": "object",
            "additionalProperties": False,
            "required": ["repository"],
            "properties": {
                "repository": {"type": "string", "minLength": 1},
                "tag": {"type": "string"},
                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
            },
        },
        "imagePullSecrets": _LIST,
        "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "serve": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "applicationName": _K8S_NAME,
                "proxyLocation": {
                    "enum": ["", "HeadOnly", "EveryNode"],
                    "description": '"": EveryNode with routerGroup.enabled, else HeadOnly',
                },
                "haproxy": {"type": "boolean"},
                "throughputOptimized": {"type": "boolean"},
                "runtimeEnv": _OBJ,
            },
        },
        "tracing": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "otlpEndpoint": {
                    "type": "string",
                    "pattern": r"^(https?://[^\s/]+(/\S*)?)?$",
                    "description": "OTLP/HTTP base URL of the OpenTelemetry collector; empty: no export",
                },
                "collectorPeers": {
                    "type": "array",
                    "items": _OBJ,
                    "description": "NetworkPolicy peers of the collector (egress from every Ray pod)",
                },
                "collectorPort": {"type": "integer", "minimum": 1, "maximum": 65535},
            },
        },
        "router": {
            "type": "object",
            "additionalProperties": False,
            "required": ["rayResource", "capacity"],
            "properties": {
                "rayResource": {"type": "string", "minLength": 1},
                "capacity": {"type": "integer", "minimum": 1},
            },
        },
        "upgradeStrategy": {"enum": ["NewCluster", "None"]},
        "routerGroup": _group(
            {
                "enabled": {"type": "boolean"},
                "name": {**_K8S_NAME, "maxLength": 30},
                "replicas": {
                    "type": "integer",
                    "minimum": 2,
                    "description": "router pods, one router replica each (config server.ingress_replicas); two "
                    "or more, or routerGroup.enabled false for the router on the head",
                },
                "podAntiAffinity": {"enum": ["preferred", "required"]},
                "affinity": {
                    "type": "object",
                    "not": {"required": ["podAntiAffinity"]},
                    "description": "extra affinity; the chart sets podAntiAffinity (routerGroup.podAntiAffinity)",
                },
            },
            ["enabled", "name", "replicas", "podAntiAffinity"],
        ),
        "head": _group({"rayCpus": {"type": "integer", "minimum": 0}}, ["rayCpus"]),
        "workerGroups": {
            "type": "array",
            "items": _group(
                {
                    "name": {**_K8S_NAME, "maxLength": 30},
                    "replicas": {"type": "integer", "minimum": 0},
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 1},
                    "gpus": {"type": "integer", "minimum": 0},
                },
                ["name", "replicas", "minReplicas", "maxReplicas", "gpus"],
            ),
        },
        "autoscaler": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
                "resources": _RESOURCES,
            },
        },
        "weights": {
            "type": "object",
            "additionalProperties": False,
            "required": ["mountPath"],
            "description": "where the model weights come from: existingClaim (a PVC) or volume (a volume source)",
            "properties": {
                "mountPath": {"type": "string", "pattern": "^/"},
                "existingClaim": {"type": "string"},
                "volume": _OBJ,
            },
            "anyOf": [
                {"required": ["existingClaim"], "properties": {"existingClaim": {"minLength": 1}}},
                {"required": ["volume"], "properties": {"volume": {"minProperties": 1}}},
            ],
        },
        "audit": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mountPath": {"type": "string", "pattern": "^/"},
                "perClusterFile": {"type": "boolean"},
                "fileName": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"},
                "persistence": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "existingClaim": {"type": "string"},
                        "size": {"type": "string"},
                        "storageClass": {"type": "string"},
                        "accessModes": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"enum": ["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]},
                        },
                    },
                },
            },
        },
        "auth": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "existingSecret": {"type": "string"},
                "key": {"type": "string", "minLength": 1},
                "mountPath": {"type": "string", "pattern": "^/"},
                "jwks": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "the OIDC provider's JWKS from an existing Secret or ConfigMap (one of them); "
                    "the chart sets config.auth.oidc.jwks_file to it",
                    "properties": {
                        "existingSecret": {"type": "string"},
                        "existingConfigMap": {"type": "string"},
                        "key": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                        "mountPath": {"type": "string", "pattern": "^/"},
                    },
                },
            },
        },
        "backendSecrets": {
            "type": "object",
            "description": "backend name -> existing Secret holding its API key (never a value)",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["existingSecret", "key"],
                "properties": {
                    "existingSecret": {**_K8S_NAME, "maxLength": 253},
                    "key": {"type": "string", "minLength": 1},
                },
            },
        },
        "backendSecretsMountPath": {"type": "string", "pattern": "^/"},
        "networkPolicy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "dns": {"type": "object", "properties": {"namespaceSelector": _STR_MAP, "podSelector": _STR_MAP}},
                "apiClients": _LIST,
                "routerEgress": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["cidr"],
                        "properties": {
                            "cidr": {"type": "string", "pattern": r"^[0-9a-fA-F:.]+/\d{1,3}$"},
                            "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
                        },
                    },
                },
                "kubeRayOperator": {
                    "type": "object",
                    "properties": {"namespaceSelector": _OBJ, "podSelector": _STR_MAP},
                },
                "kubeApiServer": {
                    "type": "object",
                    "properties": {
                        "cidrs": {"type": "array", "items": {"type": "string"}},
                        "port": {"type": "integer"},
                    },
                },
                "metricsScrapers": _LIST,
            },
        },
        "service": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "annotations": _STR_MAP,
            },
        },
        "ingress": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "className": {"type": "string"},
                "annotations": _STR_MAP,
                "hosts": _LIST,
                "tls": _LIST,
            },
        },
        "podDisruptionBudget": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "maxUnavailable": {"type": ["integer", "string"]},
                "minAvailable": {"type": ["integer", "string", "null"]},
            },
        },
        "gcsFaultTolerance": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "redisAddress": {"type": "string", "description": "HOST:PORT of the external Redis/Valkey"},
                "passwordSecret": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                },
                "externalStorageNamespace": {"type": "string"},
                "redisPeers": _LIST,
            },
            "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
            "then": {"required": ["redisAddress"], "properties": {"redisAddress": {"minLength": 1}}},
        },
        "rayAuth": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"enabled": {"type": "boolean"}, "secretName": {"type": "string"}},
        },
        "serviceMonitor": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"enabled": {"type": "boolean"}, "interval": {"type": "string"}, "labels": _STR_MAP},
        },
        "alerts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "labels": _STR_MAP,
                "auditShipBacklogRecords": {"type": "integer", "minimum": 0},
                "auditShipBacklogFor": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                "auditAnchorMaxAgeSeconds": {"type": "integer", "minimum": 1},
                "classificationFailures": {"type": "integer", "minimum": 0},
                "commercialEgressPerMinute": {"type": "number", "minimum": 0},
                "errorRatio": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "transparency": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "record": {"type": "string"},
                "labels": _STR_MAP,
                "fileName": {"type": "string", "pattern": "^[-._a-zA-Z0-9]+$"},
            },
        },
        "dashboard": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"enabled": {"type": "boolean"}, "labels": _STR_MAP},
        },
        "podSecurityContext": {
            "type": "object",
            "required": ["runAsNonRoot"],
            "properties": {"runAsNonRoot": {"const": True}, "runAsUser": {"type": "integer", "minimum": 1}},
        },
        "securityContext": {
            "type": "object",
            "required": ["runAsNonRoot", "allowPrivilegeEscalation"],
            "properties": {
                "runAsNonRoot": {"const": True},
                "allowPrivilegeEscalation": {"const": False},
                "privileged": {"const": False},
            },
        },
        "tests": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"enabled": {"type": "boolean"}, "resources": _RESOURCES},
        },
    }


def config_schema() -> dict[str, Any]:
    """The sovereign configuration schema from pydantic, with the rules pydantic enforces in code."""
    schema = Settings.model_json_schema()
    defs = schema.pop("$defs")
    labels = {int(level): level.label for level in Level}
    for definition in defs.values():  # IntEnum defaults appear as integers; show the labels
        for prop in definition.get("properties", {}).values():
            if prop.get("enum") == list(LEVEL_LABELS) and isinstance(prop.get("default"), int):
                prop["default"] = labels[prop["default"]]
    # One readable error per backend instead of "oneOf failed": dispatch on kind.
    schema["properties"]["backends"]["items"] = {
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": ["vllm", "openai", "adapter"]}},
        "allOf": [
            {"if": {"properties": {"kind": {"const": "vllm"}}}, "then": {"$ref": "#/$defs/VLLMBackendConfig"}},
            {"if": {"properties": {"kind": {"const": "openai"}}}, "then": {"$ref": "#/$defs/OpenAIBackendConfig"}},
            {"if": {"properties": {"kind": {"const": "adapter"}}}, "then": {"$ref": "#/$defs/AdapterBackendConfig"}},
        ],
    }
    openai = defs["OpenAIBackendConfig"]
    openai["if"] = {"properties": {"sovereign": {"const": False}}}  # absent means false
    openai["then"] = {
        "properties": {
            "max_classification": {
                "const": "OFFICIAL",
                "description": "a non-sovereign backend is never cleared above OFFICIAL",
            }
        }
    }
    adapter = defs["AdapterBackendConfig"]["properties"]
    adapter["sovereign"] = {"const": True, "description": "an adapter runs on a local engine: sovereign"}
    vllm = defs["VLLMBackendConfig"]["properties"]
    vllm["sovereign"] = {"const": True, "description": "a vllm backend runs inside this cluster: sovereign"}
    vllm["verify_manifest"] = {
        "const": True,
        "default": True,
        "description": "the chart serves only weights verified against their manifest",
    }
    return {"config": schema, "$defs": defs}


def values_schema() -> dict[str, Any]:
    """The complete ``values.schema.json``."""
    config = config_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sovereign-inference chart values",
        "type": "object",
        "additionalProperties": False,
        "required": ["image", "config", "weights", "head", "routerGroup", "workerGroups", "router", "audit"],
        "properties": {**chart_schema(), "config": config["config"]},
        "$defs": config["$defs"],
    }


def schema_text() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"


def render_chart(values: dict[str, Any]) -> dict[str, str]:
    """Render the chart offline with Helm's own engine (helm-python-sdk)."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def effective_config(rendered: dict[str, str]) -> dict[str, Any]:
    """The sovereign configuration the chart rendered into its ConfigMap."""
    (text,) = [v for k, v in rendered.items() if k.endswith("/configmap.yaml")]
    return yaml.safe_load(yaml.safe_load(text)["data"]["config.yaml"])


def router_group(values: dict[str, Any]) -> bool:
    """Whether the chart renders the routers as a worker group of their own (routerGroup.enabled, on by default)."""
    return bool((values.get("routerGroup") or {}).get("enabled", True))


def proxy_location(values: dict[str, Any]) -> str:
    """Serve's proxy location as the chart renders it (serve.proxyLocation; "" follows the router's placement)."""
    return (values.get("serve") or {}).get("proxyLocation") or ("EveryNode" if router_group(values) else "HeadOnly")


def serve_files() -> dict[Path, str]:
    """deploy/serve/*.serve.yaml from each example's rendered configuration."""
    out = {}
    for values_name, serve_name in EXAMPLES.items():
        values = yaml.safe_load((ROOT / "deploy" / values_name).read_text())
        config = effective_config(render_chart(values))
        runtime_env = (values.get("serve") or {}).get("runtimeEnv") or None
        endpoint = (values.get("tracing") or {}).get("otlpEndpoint") or ""
        if router_group(values):
            start = (
                "# On a plain Ray cluster: ray start --head --num-cpus 0 ... (the control plane); on each of the "
                f"{config['server']['ingress_replicas']} router\n"
                "# nodes ray start --address HEAD:6379 --num-cpus 0 --resources='{\"sovereign-router\": 1}' "
                "with SOVEREIGN_AUDIT__PATH set to a file of\n# its own; engine nodes as usual; then\n"
            )
        else:
            start = "# On a plain Ray cluster: ray start --head --resources='{\"sovereign-router\": 1000}' ...; then\n"
        header = (
            f"# Generated by deploy/generate.py from deploy/{values_name} (the configuration the chart "
            "renders).\n" + start + f"#   serve deploy deploy/serve/{serve_name}\n"
        )
        if endpoint:
            header += (
                "# Tracing is on: start Ray on every node with OTEL_EXPORTER_OTLP_ENDPOINT (the example: "
                f"{endpoint})\n# and OTEL_SERVICE_NAME in its environment.\n"
            )
        out[SERVE_DIR / serve_name] = header + render_yaml(
            serve_config(
                copy.deepcopy(config),
                proxy_location=proxy_location(values),
                runtime_env=runtime_env,
                tracing=bool(endpoint),
            )
        )
    return out


def dashboard_copies() -> dict[Path, str]:
    """deploy/grafana/NAME.json for each of the chart's dashboards."""
    return {DASHBOARD_COPIES / path.name: path.read_text() for path in sorted(DASHBOARDS.glob("*.json"))}


def expected_files() -> dict[Path, str]:
    files = {SCHEMA_PATH: schema_text(), **dashboard_copies()}
    files.update(serve_files())
    return files


def stale_files() -> list[Path]:
    return [p for p, text in expected_files().items() if not p.exists() or p.read_text() != text]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run deploy/generate.py)", file=sys.stderr)
        return 1 if stale else 0
    # The schema first: Helm validates the example values against it while rendering the serve configs.
    SERVE_DIR.mkdir(parents=True, exist_ok=True)
    # (serve_files is called only after the schema is written: a tuple would build both first.)
    for build in (lambda: {SCHEMA_PATH: schema_text(), **dashboard_copies()}, serve_files):
        for path, text in build().items():
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
