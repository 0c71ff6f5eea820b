"""Tools, structured outputs, score and rerank on the real CPU engines of the shared app, through the official
``openai`` SDK over HTTP.

The tiny model's weights are random, so what it says is noise; what these tests check is what vLLM's grammar
(xgrammar, on the CPU) and tool-call parser make of it: JSON that matches the schema, a tool call the SDK parses.
The schemas hold enums and booleans, so a random model cannot run on inside a string until ``max_tokens``.
The shared app's local engine has ``tool_call_parser: hermes`` and a chat template that renders the tools
(tests/conftest.py). Score and rerank use the app's MiniLM embedding engine.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import jsonschema
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from tests.support.app import RunningApp
from tests.support.audit import final_record

pytestmark = pytest.mark.engine

NHS = "943 476 5919"  # a valid NHS number (mod 11): personal data, OFFICIAL-SENSITIVE
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["city", "urgent"],
    "properties": {"city": {"type": "string", "enum": ["London", "Leeds", "York"]}, "urgent": {"type": "boolean"}},
}
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "the weather in a city", "parameters": SCHEMA, "strict": True},
}
MESSAGES = [{"role": "user", "content": "What is the weather like?"}]


# -- structured outputs and tools on the tiny engine -------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_response_format_json_schema_yields_matching_json(app: RunningApp, seed: int) -> None:
    completion = app.client().chat.completions.create(
        model="local-only",
        messages=MESSAGES,
        max_tokens=200,
        seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA, "strict": True}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content or ""), SCHEMA)


def test_response_format_json_schema_streamed(app: RunningApp) -> None:
    stream = app.client().chat.completions.create(
        model="local-only",
        messages=MESSAGES,
        max_tokens=200,
        seed=3,
        stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA, "strict": True}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    jsonschema.validate(json.loads(text), SCHEMA)


@pytest.mark.parametrize(
    "tool_choice", [{"type": "function", "function": {"name": "get_weather"}}, "required"], ids=["named", "required"]
)
def test_tool_choice_yields_a_tool_call_the_sdk_parses(app: RunningApp, tool_choice: Any) -> None:
    other: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string", "enum": ["UTC", "BST"]}},
                "required": ["zone"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    completion = app.client().chat.completions.create(
        model="local-only",
        messages=MESSAGES,
        max_tokens=200,
        seed=1,
        tools=[TOOL, other],
        tool_choice=tool_choice,
        parallel_tool_calls=False,
    )
    message = completion.choices[0].message
    assert message.tool_calls, message
    call = message.tool_calls[0]
    assert call.type == "function" and call.id
    arguments = json.loads(call.function.arguments)
    if tool_choice == "required":
        assert completion.choices[0].finish_reason == "tool_calls"
        assert call.function.name in {"get_weather", "get_time"}
    else:
        assert call.function.name == "get_weather"
    jsonschema.validate(arguments, SCHEMA if call.function.name == "get_weather" else other["function"]["parameters"])


def test_tool_call_streamed(app: RunningApp) -> None:
    """The SDK's stream helper assembles the call from its deltas."""
    with app.client().chat.completions.stream(
        model="local-only",
        messages=MESSAGES,
        max_tokens=200,
        seed=2,
        tools=[TOOL],
        parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as stream:
        completion = stream.get_final_completion()
    call = (completion.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMA)


def test_tool_call_can_be_answered_with_its_result(app: RunningApp) -> None:
    """The second turn of a tool call (the assistant's call, then the tool's result) is accepted and answered."""
    client = app.client()
    first = client.chat.completions.create(
        model="local-only",
        messages=MESSAGES,
        max_tokens=200,
        seed=1,
        tools=[TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    call = first.choices[0].message.tool_calls[0]
    second = client.chat.completions.create(
        model="local-only",
        max_tokens=4,
        tools=[TOOL],
        messages=[
            *MESSAGES,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 14}'},
        ],
    )
    assert second.choices[0].message.role == "assistant"


def test_the_configured_chat_template_renders_the_tools(app: RunningApp) -> None:
    """The engine's chat template is the one in the configuration (the tiny model's own ignores tools): the same
    conversation with tools takes more prompt tokens."""
    client = app.client()
    bare = client.chat.completions.create(model="local-only", messages=MESSAGES, max_tokens=1)
    with_tools = client.chat.completions.create(
        model="local-only", messages=MESSAGES, max_tokens=1, tools=[TOOL], tool_choice="none"
    )
    assert bare.usage and with_tools.usage
    assert with_tools.usage.prompt_tokens > bare.usage.prompt_tokens + 20


# -- score and rerank on the embedding engine --------------------------------------------------------------------

QUERY = "where did the cat sleep"
DOCUMENTS = ["the stock market fell sharply", "the cat slept on the warm mat", "a kitten dozed on a rug"]


def _post(app: RunningApp, path: str, body: dict[str, Any], caller: str = "tester") -> httpx.Response:
    """POST through the SDK's own client (it has no method for vLLM's endpoints), keeping the raw response."""
    return app.client(caller).post(f"/{path}", body=body, cast_to=httpx.Response)


def _error(app: RunningApp, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{app.base_url}/{path}", json=body, headers=app.headers(), timeout=60)


def test_rerank_orders_the_documents(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    response = _post(app, "rerank", {"model": "embeddings", "query": QUERY, "documents": DOCUMENTS, "top_n": 2})
    assert response.headers["x-sovereign-backend"] == "embed"
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results][:1] == [1] and len(results) == 2
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert {r["index"] for r in results} == {1, 2}  # the two about a cat; never the stock market
    assert results[0]["document"]["text"] == DOCUMENTS[1]
    assert body["usage"]["prompt_tokens"] > 0
    assert commercial.received == []


@pytest.mark.parametrize("form", [("queries", "documents"), ("text_1", "text_2"), ("data_1", "data_2")])
def test_score_each_pair(app: RunningApp, form: tuple[str, str]) -> None:
    first, second = form
    response = _post(app, "score", {"model": "embeddings", first: QUERY, second: DOCUMENTS})
    body = response.json()
    scores = [d["score"] for d in sorted(body["data"], key=lambda d: d["index"])]
    assert body["object"] == "list" and len(scores) == 3 and all(-1 <= s <= 1 for s in scores)
    assert scores[1] > scores[0] and scores[2] > scores[0]
    assert body["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("path", ["rerank", "score"])
def test_every_string_is_classified_and_stays_local(app: RunningApp, commercial: FakeOpenAIServer, path: str) -> None:
    """Personal data in one document makes the request OFFICIAL-SENSITIVE; on a route whose first backend is
    commercial, score and rerank go to the local embedding engine all the same (OFFICIAL ones too)."""
    documents = [DOCUMENTS[0], f"Patient NHS number {NHS} was seen today"]
    body = {"query": QUERY, "documents": documents} if path == "rerank" else {"queries": QUERY, "documents": documents}
    sensitive = _post(app, path, {"model": "embeddings-commercial-first", **body})
    assert sensitive.headers["x-sovereign-classification"] == "OFFICIAL-SENSITIVE"
    assert sensitive.headers["x-sovereign-backend"] == "embed"
    record = final_record(app.audit_path, sensitive.headers["x-request-id"])
    assert record["endpoint"] == f"/v1/{path}" and record["backend"] == "embed"
    assert any(s["type"].startswith("nhs") for s in record["signals"]), record["signals"]
    official = _post(
        app,
        path,
        {
            "model": "embeddings-commercial-first",
            **(
                {"query": QUERY, "documents": DOCUMENTS}
                if path == "rerank"
                else {"queries": QUERY, "documents": DOCUMENTS}
            ),
        },
    )
    assert official.headers["x-sovereign-classification"] == "OFFICIAL"
    assert official.headers["x-sovereign-backend"] == "embed"
    assert commercial.received == []


@pytest.mark.parametrize("path", ["rerank", "score"])
def test_a_route_of_commercial_backends_only_is_refused(
    app: RunningApp, commercial: FakeOpenAIServer, path: str
) -> None:
    response = _error(app, path, {"model": "commercial-only", "query": QUERY, "queries": QUERY, "documents": DOCUMENTS})
    assert response.status_code == 404, response.text
    assert response.json()["error"] == {
        "message": f"the model does not support /v1/{path}",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert commercial.received == []


def test_errors_never_echo_the_body(app: RunningApp) -> None:
    canary = f"canary{uuid.uuid4().hex}"
    bad: list[tuple[str, dict[str, Any], str | None]] = [
        ("rerank", {"model": "embeddings", "query": canary, "documents": [canary], "top_n": -1}, "top_n"),
        ("rerank", {"model": "embeddings", "query": canary, "documents": [canary], "top_n": "2"}, "top_n"),
        ("rerank", {"model": "embeddings", "query": canary}, "documents"),
        ("rerank", {"model": "embeddings", "query": canary, "documents": [canary], canary: 1}, None),
        ("score", {"model": "embeddings", "queries": canary, "documents": [canary], "top_n": 1}, None),
        ("score", {"model": "embeddings", "queries": [canary], "documents": []}, None),
    ]
    for path, body, param in bad:
        response = _error(app, path, body)
        assert response.status_code == 400, (path, body, response.text)
        assert canary not in response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        if param is not None:
            assert error["param"] == param, error


def test_models_list_the_endpoints_each_serves(app: RunningApp) -> None:
    listed = {m.id: (m.model_extra or {}).get("endpoints") for m in app.client().models.list()}
    assert listed["local-only"] == ["/v1/chat/completions", "/v1/completions", "/v1/responses"]
    assert listed["embeddings"] == ["/v1/embeddings", "/v1/score", "/v1/rerank"]
    generating = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
    assert listed["commercial-only"] == listed["default"] == generating
