"""Helpers for the deployment tests: rendering the chart with Helm's own engine, parsing what it renders."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES_FILES = ["default", "values-h200-8b.yaml", "values-8gpu-70b.yaml", "values-cpu-dev.yaml"]


def load_generate() -> ModuleType:
    """deploy/generate.py (not a package): renders the chart and builds the generated files."""
    spec = importlib.util.spec_from_file_location("sovereign_deploy_generate", ROOT / "deploy" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Rendered:
    """One rendering of the chart: the values given, the raw files and the parsed objects."""

    name: str
    values: dict[str, Any]
    files: dict[str, str]
    objects: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        (obj,) = self.of_kind(kind)
        return obj


def values_of(name: str) -> dict[str, Any]:
    return {} if name == "default" else yaml.safe_load((ROOT / "deploy" / name).read_text())


def render(generate: ModuleType, name: str, values: dict[str, Any]) -> Rendered:
    files = generate.render_chart(values)
    objects = [
        doc for path, text in files.items() if not path.endswith("NOTES.txt") for doc in yaml.safe_load_all(text) if doc
    ]
    return Rendered(name=name, values=values, files=files, objects=objects)


def cluster_of(rendered: Rendered) -> dict[str, Any]:
    return rendered.one("RayService")["spec"]["rayClusterConfig"]


def has_router_group(values: dict[str, Any]) -> bool:
    """routerGroup.enabled as the chart reads it (on by default)."""
    return bool((values.get("routerGroup") or {}).get("enabled", True))


def ray_templates(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """The Ray pod templates by role: "head" and "worker:<group>" (the router group's and the model hosts')."""
    cluster = cluster_of(rendered)
    templates = {"head": cluster["headGroupSpec"]["template"]}
    for group in cluster["workerGroupSpecs"]:
        templates[f"worker:{group['groupName']}"] = group["template"]
    return templates


def router_templates(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """The router pods' templates: the router group's, or the head's when the router runs on the head."""
    templates = ray_templates(rendered)
    routers = {
        role: t for role, t in templates.items() if t["metadata"]["labels"]["app.kubernetes.io/component"] == "router"
    }
    assert list(routers) == (["worker:routers"] if has_router_group(rendered.values) else ["head"]), list(routers)
    return routers


def model_host_templates(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {
        role: t
        for role, t in ray_templates(rendered).items()
        if t["metadata"]["labels"]["app.kubernetes.io/component"] == "model-host"
    }


class KubeRayCRDs:
    """KubeRay's RayService and RayCluster schemas (ray.io/v1), each checked against its metaschema once: checking
    a 1 MB schema is most of what ``jsonschema.validate`` costs."""

    def __init__(self, schemas: dict[str, dict[str, Any]]) -> None:
        self.validators = {}
        for kind, schema in schemas.items():
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self.validators[kind] = cls(schema)

    def check(self, rendered: Rendered) -> None:
        """The rendered RayService, and its cluster as a RayCluster, are valid KubeRay objects (raises if not)."""
        service = rendered.one("RayService")
        assert service["apiVersion"] == "ray.io/v1"
        self.validators["RayService"].validate(service)
        cluster = {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": "check"},
            "spec": service["spec"]["rayClusterConfig"],
        }
        self.validators["RayCluster"].validate(cluster)
