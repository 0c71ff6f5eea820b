"""`sovereign config render-serve`: the Ray Serve config for `serve deploy`, from the one configuration file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.serve_config import main, serve_config

CONFIG: dict[str, Any] = {
    "server": {"host": "0.0.0.0", "port": 8123, "ingress_ray_resources": {"sovereign-router": 1}},
    "backends": [
        {"name": "local", "kind": "vllm", "model_source": "/models/smollm2"},
        {"name": "openai", "kind": "openai", "model": "gpt-4.1-mini"},
    ],
    "models": [{"name": "default", "route": ["local", "openai"]}],
}


def test_structure_and_config_embedded_as_given() -> None:
    out = serve_config(CONFIG)
    assert out["http_options"] == {"host": "0.0.0.0", "port": 8123}
    assert out["proxy_location"] == "HeadOnly"
    (app,) = out["applications"]
    assert app == {
        "name": "sovereign",
        "route_prefix": "/",
        "import_path": "serving.app:build_app",
        "args": {"config": CONFIG},
    }
    assert app["args"]["config"] is not CONFIG  # a copy: callers may mutate theirs


def test_runtime_env_only_when_given() -> None:
    out = serve_config(CONFIG, runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "2"}})
    assert out["applications"][0]["runtime_env"] == {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "2"}}


def test_cli_writes_yaml(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "serve.yaml"
    assert main(["render-serve", "--config", str(config), "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == serve_config(CONFIG)
    assert main(["render-serve", "--config", str(config)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == serve_config(CONFIG)


def test_cli_refuses_invalid_config_naming_the_field(tmp_path: Path, capsys) -> None:
    bad = dict(
        CONFIG,
        backends=[dict(CONFIG["backends"][1], max_classification="SECRET")],
        models=[{"name": "default", "route": ["openai"]}],
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(bad))
    assert main(["render-serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "cannot be cleared above OFFICIAL" in err
    assert main(["check", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_check_subcommand(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["check", "--config", str(config)]) == 0
    assert "valid" in capsys.readouterr().out


def test_tracing_config_only_when_asked() -> None:
    assert "tracing_config" not in serve_config(CONFIG)
    tracing = serve_config(CONFIG, tracing=True)["tracing_config"]
    assert tracing == {
        "enabled": True,
        "exporter_import_path": "serving.telemetry:ray_serve_span_processors",
        "sampling_ratio": 1.0,
    }
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(serve_config(CONFIG, tracing=True))  # Ray accepts it as a deploy config


@pytest.fixture
def in_process_ray() -> Iterator[None]:
    """Building the application connects a local Ray cluster inside the test process (Ray Serve LLM's builder calls
    into Ray, which starts one when none is connected); stop it afterwards, or its daemons outlive the test."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.mark.slow
def test_drain_timeout_reaches_the_router_and_engine_deployments(tmp_path: Path, in_process_ray: None) -> None:
    """``server.drain_timeout_s`` is how long Serve lets requests in flight finish when a replica stops; the
    application that `serve deploy` and the chart build from the config carries it on every deployment."""
    from serving.app import build_application
    from serving.config import load_settings

    backend = {"name": "local", "kind": "vllm", "model_source": str(tmp_path), "served_model_name": "m"}
    for data, expected in (({}, 20.0), ({"server": {"drain_timeout_s": 300}}, 300.0)):
        settings = load_settings(data={**data, "backends": [backend], "models": [{"name": "d", "route": ["local"]}]})
        ingress = build_application(settings)._bound_deployment
        engine = ingress.init_args[1]["local"]._bound_deployment
        assert ingress._deployment_config.graceful_shutdown_timeout_s == expected
        assert engine._deployment_config.graceful_shutdown_timeout_s == expected
