"""How an error may point into a body without quoting the caller (``serving/openai_fields.py``), and the OpenAI
fields a local backend ignores. Pure functions: no server."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, TypeAdapter

from serving import openai_fields
from serving.backends.base import Endpoint


class _VLLMLike(BaseModel):
    model: str
    logit_bias: dict[str, float] | None = None
    vllm_xargs: dict[str, str | int] | None = None


openai_fields.register_schema(TypeAdapter(_VLLMLike))


def test_a_callers_key_is_described_and_param_stops_before_it() -> None:
    body = {"model": "m", "logit_bias": {"Jo Bloggs 9434765919": "x"}}
    assert openai_fields.field_path(("logit_bias", "Jo Bloggs 9434765919"), body) == ("logit_bias.<key>", "logit_bias")
    assert openai_fields.field_path(("logit_bias", "Jo Bloggs 9434765919", "[key]"), body)[0] == "logit_bias.<key>"


def test_union_tags_are_dropped_and_indices_and_missing_fields_shown() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": 5}], "vllm_xargs": {"k": [1]}}
    path = openai_fields.field_path(("messages", 0, "user", "content", "str"), body)
    assert path == ("messages.0.user.content", "messages.0.user.content")  # 'user' is a schema word (role value)
    assert openai_fields.field_path(("vllm_xargs", "k", "str"), body) == ("vllm_xargs.<key>", "vllm_xargs")
    assert openai_fields.field_path(("messages",), {"model": "m"}) == ("messages", "messages")
    assert openai_fields.field_path(("function-after[check()]", "Jo Bloggs"), {}) == ("", None)


def test_a_key_that_is_a_schema_name_may_be_shown() -> None:
    body = {"logit_bias": {"model": "x"}}
    assert openai_fields.field_path(("logit_bias", "model"), body) == ("logit_bias.model", "logit_bias.model")


@pytest.mark.parametrize(
    ("param", "kept"),
    [
        ("messages[0].content", True),
        ("logit_bias", True),
        ("tool_choice", True),
        ("messages.3.role", True),
        ("logit_bias.Jo Bloggs", False),
        ("logit_bias.9434765919", False),
        ("", False),
        (None, False),
        (7, False),
        ("x" * 200, False),
    ],
)
def test_safe_param_keeps_schema_paths_only(param: object, kept: bool) -> None:
    assert openai_fields.safe_param(param) == (param if kept else None)


def test_quotes_caller_finds_body_text_and_long_numbers() -> None:
    body = {
        "messages": [{"role": "user", "content": "Jo Bloggs"}],
        "seed": 9434765919,
        "n": 2,
        "tool_choice": {"type": "function", "function": {"name": "lookup_patient"}},
    }
    assert openai_fields.quotes_caller("Tool 'lookup_patient' is not defined", body)
    assert openai_fields.quotes_caller("seed 9434765919 is too large", body)
    assert openai_fields.quotes_caller("no such name: Jo Bloggs", body)
    assert not openai_fields.quotes_caller("Input should be a valid integer", body)
    assert not openai_fields.quotes_caller("n must be 2 or less", body)  # short numbers say nothing
    assert openai_fields.quotes_caller("anything", {"input": ["x"] * 200_000})  # too big to check: fail closed


def test_the_fields_a_local_backend_ignores_are_openai_fields() -> None:
    ignored = openai_fields.IGNORED_LOCALLY
    assert set(openai_fields.openai_field_types(Endpoint.CHAT)) >= ignored
    assert {"metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"} <= ignored


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("metadata", {"team": "courts"}, True),
        ("metadata", {"a": {"b": 1}}, False),
        ("metadata", None, True),
        ("store", False, True),
        ("store", "yes", False),
        ("service_tier", "flex", True),
        ("service_tier", "gold", False),
        ("prompt_cache_key", "k", True),
        ("prompt_cache_key", 5, False),
        ("safety_identifier", "u1", True),
    ],
)
def test_openai_types_are_checked_strictly(name: str, value: object, ok: bool) -> None:
    assert openai_fields.check_type(Endpoint.CHAT, name, value) is ok


def test_unknown_fields_message_suggests_schema_names_only() -> None:
    known = ["temperature", "top_p", "model"]
    assert openai_fields.unknown_fields_message(1, ["temprature"], known) == (
        "invalid request: 1 unrecognized request argument (did you mean temperature?)"
    )
    assert openai_fields.unknown_fields_message(2, ["Jo Bloggs", "9434765919"], known) == (
        "invalid request: 2 unrecognized request arguments"
    )


def test_an_upstream_refusal_keeps_only_a_schema_param_and_a_code_like_code() -> None:
    from serving.backends.errors import sanitised_refusal

    leaky = sanitised_refusal(
        400, {"message": "Jo Bloggs is not a token", "param": "logit_bias.Jo Bloggs", "code": "Jo Bloggs 943 476 5919"}
    )
    assert leaky.envelope["error"] == {
        "message": "the model backend rejected the request",
        "type": "invalid_request_error",
        "param": None,
        "code": "backend_refused",
    }
    plain = sanitised_refusal(400, {"message": "x", "param": "messages[0].content", "code": "invalid_value"})
    assert (plain.envelope["error"]["param"], plain.envelope["error"]["code"]) == (
        "messages[0].content",
        "invalid_value",
    )
