"""Placement on a Ray cluster, without Ray: what ``backends[].ray_resources`` becomes in the engine's deployment,
what the configuration accepts, what a local Ray instance offers, and how `sovereign serve --address` is asked for.
The same on a real two-node cluster: tests/reliability/test_ray_cluster.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from serving.config import ConfigError, load_settings


def _settings(tmp_path: Path, backend: dict[str, Any] | None = None, server: dict[str, Any] | None = None) -> Any:
    local = {
        "name": "local",
        "kind": "vllm",
        "model_source": str(tmp_path),
        "served_model_name": "m",
        **(backend or {}),
    }
    return load_settings(
        data={"server": server or {}, "backends": [local], "models": [{"name": "d", "route": ["local"]}]}
    )


def test_ray_resources_go_to_the_engine_replica(tmp_path: Path) -> None:
    from serving.app import llm_config

    settings = _settings(tmp_path, {"ray_resources": {"sovereign-engine": 1}})
    config = llm_config(settings.backends[0])
    assert config.deployment_config["ray_actor_options"] == {"resources": {"sovereign-engine": 1.0}}
    assert "ray_actor_options" not in llm_config(_settings(tmp_path).backends[0]).deployment_config


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"GPU": 1}, "Ray's own resources"),
        ({"node:10.0.0.1": 1}, "Ray's own resources"),
        ({"engine": 0}, "above zero"),
    ],
)
def test_ray_resources_must_be_custom_and_positive(tmp_path: Path, resources: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, {"ray_resources": resources})


def test_a_local_ray_offers_what_the_config_asks_for(tmp_path: Path) -> None:
    from serving.serve import local_resources

    settings = _settings(
        tmp_path,
        {"ray_resources": {"engine": 1}, "autoscaling": {"max_replicas": 3}},
        {"ingress_replicas": 2, "ingress_ray_resources": {"router": 1, "engine": 0.5}},
    )
    assert local_resources(settings) == {"router": 2.0, "engine": 4.0}
    assert local_resources(_settings(tmp_path)) == {}


def test_address_needs_a_config(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.serve import main

    monkeypatch.delenv("SOVEREIGN_CONFIG", raising=False)
    assert main(["--address", "127.0.0.1:6379"]) == 2
    assert "--address needs --config" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:6379", True),
        ("localhost:6379", True),
        ("ray://127.0.0.1:10001", True),
        ("[::1]:6379", True),
        ("10.0.0.10:6379", False),
        ("ray://head.sovereign:10001", False),
    ],
)
def test_a_loopback_cluster_address_is_kept(address: str, loopback: bool) -> None:
    from serving.serve import _driver_env

    env = _driver_env(address)
    assert ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in env) == loopback
    assert env.get("RAY_ENABLE_AUTO_CONNECT") == "0"


def test_an_unreachable_cluster_is_said_at_once() -> None:
    import socket

    from serving.serve import _unreachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert _unreachable(f"127.0.0.1:{port}") is None
        assert _unreachable(f"ray://127.0.0.1:{port}") is None
    assert _unreachable(f"127.0.0.1:{port}", timeout_s=1) is not None  # closed now: refused
    assert _unreachable("no-port") == "not HOST:PORT"
