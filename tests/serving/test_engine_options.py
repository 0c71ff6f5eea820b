"""Typed engine options for tools and structured outputs, and the routes of vLLM's pooling endpoints, without Ray.

What the configuration accepts and refuses, what it becomes in Ray Serve LLM's ``LLMConfig`` (and which of vLLM's
argument sets each option lands in), that score and rerank never go to an OpenAI-kind backend, and that
``GET /v1/models`` says which endpoints each model serves. The same options on the real CPU engine:
tests/serving/test_tools_and_pooling.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from serving.backends.base import Endpoint
from serving.config import ConfigError, OpenAIBackendConfig, load_settings
from tests.support.inprocess import InProcessGateway, running_gateway

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def _settings(tmp_path: Path, engine: dict[str, Any] | None = None, task: str = "generate") -> Any:
    local = {
        "name": "local",
        "kind": "vllm",
        "model_source": str(tmp_path),
        "served_model_name": "m",
        "task": task,
        "engine": engine or {},
    }
    return load_settings(data={"backends": [local], "models": [{"name": "d", "route": ["local"]}]})


def test_tool_options_reach_vllm(tmp_path: Path) -> None:
    """The one place engine settings are built passes them on; Ray Serve LLM sorts them into vLLM's frontend
    arguments (tool parser, auto tool choice, template) and engine arguments (reasoning parser)."""
    from ray.llm._internal.serve.engines.vllm.vllm_models import VLLMEngineConfig

    from serving.app import llm_config

    engine = {"tool_call_parser": "hermes", "reasoning_parser": "deepseek_r1", "chat_template": TEMPLATE}
    config = llm_config(_settings(tmp_path, engine).backends[0])
    assert {k: config.engine_kwargs[k] for k in (*engine, "enable_auto_tool_choice")} == {
        **engine,
        "enable_auto_tool_choice": True,
    }
    split = VLLMEngineConfig.from_llm_config(config)
    assert split.frontend_kwargs == {
        "tool_call_parser": "hermes",
        "enable_auto_tool_choice": True,
        "chat_template": TEMPLATE,
    }
    assert split.engine_kwargs["reasoning_parser"] == "deepseek_r1"


def test_no_tool_options_by_default(tmp_path: Path) -> None:
    from serving.app import llm_config

    kwargs = llm_config(_settings(tmp_path).backends[0]).engine_kwargs
    assert not kwargs.keys() & {"tool_call_parser", "enable_auto_tool_choice", "reasoning_parser", "chat_template"}


def test_chat_template_as_a_path_is_passed_as_is(tmp_path: Path) -> None:
    """A path is read on the engine's node (vLLM reads it when it starts), so it is not looked for here."""
    from serving.app import llm_config

    settings = _settings(tmp_path, {"chat_template": "/templates/tool_chat_template_llama3.jinja"})
    assert llm_config(settings.backends[0]).engine_kwargs["chat_template"] == (
        "/templates/tool_chat_template_llama3.jinja"
    )


@pytest.mark.parametrize(
    ("engine", "named", "message"),
    [
        ({"tool_call_parser": "hermez"}, "backends.0.vllm.engine.tool_call_parser", "not one of vLLM's tool parsers"),
        ({"tool_call_parser": "hermes; rm -rf"}, "backends.0.vllm.engine.tool_call_parser", "should match pattern"),
        (
            {"reasoning_parser": "deepseek"},
            "backends.0.vllm.engine.reasoning_parser",
            "not one of vLLM's reasoning parsers",
        ),
        (
            {"chat_template": "{% for m in messages %}{{ m }"},
            "backends.0.vllm.engine.chat_template",
            "not a valid Jinja template",
        ),
        ({"chat_template": ""}, "backends.0.vllm.engine.chat_template", "at least 1 character"),
        ({"enable_auto_tool_choice": True}, "backends.0.vllm.engine.enable_auto_tool_choice", "Extra inputs"),
        ({"extra": {"tool_call_parser": "hermes"}}, "backends.0.vllm.engine", "typed settings of engine"),
        ({"extra": {"enable_auto_tool_choice": True}}, "backends.0.vllm.engine", "typed settings of engine"),
    ],
)
def test_bad_tool_options_are_named(tmp_path: Path, engine: dict[str, Any], named: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, engine)
    assert named in str(info.value) and message in str(info.value), str(info.value)


def test_a_parser_error_lists_the_names_vllm_knows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, {"tool_call_parser": "hermez"})
    assert "hermes" in str(info.value) and "llama3_json" in str(info.value)


# -- which backend serves which endpoint, and what /v1/models says ---------------------------------------------


def test_only_local_pooling_models_serve_score_and_rerank(tmp_path: Path) -> None:
    from serving.backends.local import LocalBackend
    from serving.backends.openai_http import OpenAIBackend
    from tests.support.fake_engine import InProcessHandle

    embed, generate = (
        LocalBackend(_settings(tmp_path, task=task).backends[0], InProcessHandle(None), "m")
        for task in ("embed", "generate")
    )
    assert {e for e in Endpoint if embed.serves(e)} == {Endpoint.EMBEDDINGS, Endpoint.SCORE, Endpoint.RERANK}
    assert {e for e in Endpoint if generate.serves(e)} == {Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.RESPONSES}
    remote = load_settings(
        data={
            "backends": [{"name": "o", "kind": "openai", "model": "x", "embedding_model": "e"}],
            "models": [{"name": "d", "route": ["o"]}],
        }
    ).backends[0]
    assert isinstance(remote, OpenAIBackendConfig)
    assert {e for e in Endpoint if OpenAIBackend(remote).serves(e)} == {
        Endpoint.CHAT,
        Endpoint.COMPLETIONS,
        Endpoint.EMBEDDINGS,
        Endpoint.RESPONSES,
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    with running_gateway(tmp_path_factory.mktemp("pooling-routes")) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("rerank", {"query": "where is the cat", "documents": ["a cat on a mat", "stock prices"]}),
        ("score", {"queries": "where is the cat", "documents": ["a cat on a mat"]}),
        ("score", {"text_1": "where is the cat", "text_2": "a cat on a mat"}),
    ],
)
@pytest.mark.parametrize("model", ["default", "commercial-only"])
def test_score_and_rerank_never_reach_an_openai_backend(
    gw: InProcessGateway, path: str, body: dict[str, Any], model: str
) -> None:
    """No route of OpenAI-kind backends (sovereign or not) serves them: a 404 in the OpenAI envelope, naming the
    path and never the caller's text, and nothing reaches either endpoint."""
    gw.uk.reset()
    gw.commercial.reset()
    response = httpx.post(f"{gw.base_url}/{path}", json={"model": model, **body}, headers=gw.headers, timeout=30)
    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": {
            "message": f"the model does not support /v1/{path}",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert gw.uk.received == [] and gw.commercial.received == []


def test_models_list_each_models_endpoints(gw: InProcessGateway) -> None:
    """The SDK keeps the extra field; the in-process gateway's routes are all OpenAI-kind backends."""
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key, max_retries=0)
    listed = {m.id: (m.model_extra or {}).get("endpoints") for m in client.models.list()}
    assert (
        listed["default"]
        == listed["commercial-only"]
        == ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
    )


def test_the_readme_table_lists_every_endpoint() -> None:
    """Every routed endpoint has a row in the README's endpoint table, and the table names no other."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| Endpoint |", 1)[1].split("\n\n", 1)[0]
    rows = set(re.findall(r"^ *\| `(?:POST|GET|DELETE) (/v1/[a-z/]+)`", table, re.M))
    assert {e.path for e in Endpoint} | {"/v1/models"} == rows
