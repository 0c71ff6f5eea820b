"""What the fleet settings become in Ray Serve LLM's ``LLMConfig``, without Ray: engine metrics, the request router,
prefix caching and LoRA (the same on real engines: tests/serving/test_fleet_app.py, test_engine_metrics_app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from serving.config import ConfigError, load_settings


def _backend(tmp_path: Path, **fields: Any) -> Any:
    local = {"name": "local", "kind": "vllm", "model_source": str(tmp_path), "served_model_name": "m", **fields}
    return load_settings(data={"backends": [local], "models": [{"name": "d", "route": ["local"]}]}).backends[0]


def test_engine_metrics_are_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    from serving.app import llm_config

    assert llm_config(_backend(tmp_path)).log_engine_metrics is True
    assert llm_config(_backend(tmp_path, engine_metrics=False)).log_engine_metrics is False


def test_prefix_aware_routing_selects_ray_serve_llms_router(tmp_path: Path) -> None:
    from ray.serve.llm.request_router import PrefixCacheAffinityRouter

    from serving.app import PREFIX_AWARE_ROUTER, llm_config

    assert "request_router_config" not in llm_config(_backend(tmp_path)).deployment_config
    config = llm_config(_backend(tmp_path, request_router="prefix_aware")).deployment_config["request_router_config"]
    module, _, name = PREFIX_AWARE_ROUTER.partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is PrefixCacheAffinityRouter
    assert config["request_router_class"] == PREFIX_AWARE_ROUTER
    assert config["request_router_kwargs"]["do_eviction"] is True  # the prompts' prefixes are kept bounded
    with pytest.raises(ConfigError, match="generation backends only"):
        _backend(tmp_path, request_router="prefix_aware", task="embed")


def test_prefix_caching_is_on_for_gpu_engines(tmp_path: Path) -> None:
    from serving.app import llm_config

    assert llm_config(_backend(tmp_path, accelerator="gpu")).engine_kwargs["enable_prefix_caching"] is True
    assert "enable_prefix_caching" not in llm_config(_backend(tmp_path)).engine_kwargs  # vLLM's default on CPU


def test_lora_turns_on_multiplexing_from_the_local_folder(tmp_path: Path) -> None:
    from serving.app import llm_config
    from serving.lora import ADAPTERS_DIR_KEY

    config = llm_config(
        _backend(
            tmp_path,
            lora={"adapters_dir": str(tmp_path / "adapters"), "max_adapters_per_replica": 3, "max_lora_rank": 8},
        )
    )
    assert config.engine_kwargs | {"enable_lora": True, "max_loras": 3, "max_lora_rank": 8} == config.engine_kwargs
    assert config.lora_config.max_num_adapters_per_replica == 3
    assert config.lora_config.dynamic_lora_loading_path is None  # nothing is downloaded
    assert config.experimental_configs[ADAPTERS_DIR_KEY] == str(tmp_path / "adapters")
    plain = llm_config(_backend(tmp_path))
    assert plain.lora_config is None and "enable_lora" not in plain.engine_kwargs
