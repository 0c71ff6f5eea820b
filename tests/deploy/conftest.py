"""Session fixtures for the deployment tests: each values file is rendered once per session."""

from __future__ import annotations

from types import ModuleType

import pytest
import yaml
from chart_support import ROOT, VALUES_FILES, KubeRayCRDs, Rendered, load_generate, render, values_of


@pytest.fixture(scope="session")
def generate() -> ModuleType:
    pytest.importorskip("helm_python", reason="helm-python-sdk (dev extra) renders the chart")
    return load_generate()


@pytest.fixture(scope="session")
def renders(generate: ModuleType) -> dict[str, Rendered]:
    return {name: render(generate, name, values_of(name)) for name in VALUES_FILES}


@pytest.fixture(scope="session", params=VALUES_FILES)
def rendered(request: pytest.FixtureRequest, renders: dict[str, Rendered]) -> Rendered:
    return renders[request.param]


@pytest.fixture(scope="session")
def kuberay() -> KubeRayCRDs:
    """The KubeRay CRDs' openAPIV3Schema (ray.io/v1) from ../shared/schemas/kuberay/, as validators."""
    folder = ROOT.parent / "shared" / "schemas" / "kuberay"
    if not folder.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {folder} (the shared folder beside the checkout)")
    schemas = {}
    for kind, filename in (("RayService", "ray.io_rayservices.yaml"), ("RayCluster", "ray.io_rayclusters.yaml")):
        crd = yaml.load((folder / filename).read_text(), Loader=yaml.CSafeLoader)  # libyaml: 5x faster on 1 MB
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schemas[kind] = version["schema"]["openAPIV3Schema"]
    return KubeRayCRDs(schemas)
