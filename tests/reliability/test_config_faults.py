"""An invalid or partly invalid configuration: start-up fails naming the field; nothing is half-applied.

There is no live reload: a running server holds one frozen ``Settings``. A new config reaches a cluster only
through ``serve deploy``/KubeRay, which calls ``build_app``; that raises before any deployment is built, so
Ray Serve keeps the running application on the old config.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from serving.app import build_app
from serving.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _good(tmp_path: Path) -> dict[str, Any]:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    return {
        "server": {"port": 18080},
        "audit": {"path": str(tmp_path / "audit.jsonl")},
        "backends": [
            {"name": "local", "kind": "vllm", "model_source": str(model), "engine": {}},
            {"name": "openai", "kind": "openai", "model": "gpt-x"},
        ],
        "models": [{"name": "default", "route": ["local", "openai"]}],
    }


BAD: list[tuple[str, Any, str]] = [
    # (dotted path to set, value, field the message must name)
    ("backends.1.max_classification", "SECRET", "backends.1.max_classification"),
    ("backends.0.max_classification", "VERY SECRET", "max_classification"),
    ("server.port", "eighty", "server.port"),
    ("server.port", 70000, "server.port"),
    ("server.hots", "0.0.0.0", "server.hots"),
    ("server.max_body_bytes", -1, "server.max_body_bytes"),
    ("backends.0.sovereign", False, "sovereign"),
    ("backends.0.engine.max_model_len", "long", "backends.0.vllm.engine.max_model_len"),
    ("models.0.route", ["local", "nowhere"], "models.0.route"),
    ("audit", "not-a-mapping", "audit"),
]


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node: Any = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(("dotted", "value", "named"), BAD, ids=[b[0] + "=" + str(b[1]) for b in BAD])
def test_invalid_field_is_named(tmp_path: Path, dotted: str, value: Any, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(data=_set(_good(tmp_path), dotted, value))
    assert named in str(info.value)


def _serve(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_serve_refuses_to_start_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_set(_good(tmp_path), "backends.1.max_classification", "SECRET")))
    started = time.monotonic()
    result = _serve(config)
    assert result.returncode == 2
    assert "backends.1.max_classification" in result.stderr
    assert "cannot be cleared above OFFICIAL" in result.stderr
    assert time.monotonic() - started < 60  # refused before Ray or any engine started
    assert not (tmp_path / "audit.jsonl").exists()


def test_bad_environment_override_is_named(tmp_path: Path) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(yaml.safe_dump(_good(tmp_path)))
    result = _serve(config, env={"SOVEREIGN_SERVER__MAX_BODY_BYTES": "lots"})
    assert result.returncode == 2
    assert "server.max_body_bytes" in result.stderr


def test_unreadable_yaml_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("server: {port: 8000\nbackends: [")
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_settings(path=config)


def test_build_app_rejects_bad_config_before_building_anything(tmp_path: Path) -> None:
    """What `serve deploy` runs for a config update: a bad one raises, so the running app stays as it was."""
    bad = _set(_good(tmp_path), "backends.1.max_classification", "SECRET")
    with pytest.raises(ConfigError, match=r"backends\.1\.max_classification"):
        build_app({"config": bad})


def test_running_settings_cannot_be_changed_in_place(tmp_path: Path) -> None:
    settings = load_settings(data=_good(tmp_path))
    with pytest.raises(ValidationError):
        settings.server.port = 1  # type: ignore[misc]  # frozen: the assignment is what must fail
    with pytest.raises(ValidationError):
        settings.backends[1].max_classification = "SECRET"  # type: ignore[misc,assignment]  # frozen: must fail
