"""The OpenAI contract through the official SDK, over real HTTP, against the real app (Ray Serve + vLLM)."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from tests.support.app import RunningApp

pytestmark = pytest.mark.engine


def test_chat_plain(app: RunningApp) -> None:
    client = app.client()
    raw = client.chat.completions.with_raw_response.create(
        model="local-only", messages=[{"role": "user", "content": "Say hello"}], max_tokens=8
    )
    reply = raw.parse()
    assert reply.choices[0].message.role == "assistant"
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.usage is not None and reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0
    assert raw.headers["x-sovereign-backend"] == "local"
    assert raw.headers["x-sovereign-classification"] == "OFFICIAL"
    assert "," not in raw.headers["x-request-id"]  # one id, not the proxy's and ours


def test_chat_streamed_with_usage(app: RunningApp) -> None:
    client = app.client()
    stream = client.chat.completions.create(
        model="local-only",
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(text, str)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens > 0
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_chat_streamed_without_usage_has_no_usage_chunk(app: RunningApp) -> None:
    stream = app.client().chat.completions.create(
        model="local-only", messages=[{"role": "user", "content": "Count"}], max_tokens=6, stream=True
    )
    chunks = list(stream)
    assert chunks and all(c.usage is None for c in chunks)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_completions_plain_and_streamed(app: RunningApp) -> None:
    client = app.client()
    reply = client.completions.create(model="local-only", prompt="The capital of France is", max_tokens=5)
    assert reply.choices[0].text is not None and reply.usage.completion_tokens > 0
    pieces = list(
        client.completions.create(
            model="local-only", prompt="Once upon", max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
    )
    assert pieces[-1].usage is not None and pieces[-1].usage.completion_tokens > 0


def test_embeddings_length_and_determinism(app: RunningApp) -> None:
    client = app.client()
    first = client.embeddings.create(model="embeddings", input=["the court adjourned", "a sunny day"])
    again = client.embeddings.create(model="embeddings", input="the court adjourned")
    assert [len(d.embedding) for d in first.data] == [384, 384]
    a, b = first.data[0].embedding, again.data[0].embedding
    assert math.isclose(sum(x * y for x, y in zip(a, b, strict=True)), 1.0, rel_tol=1e-3)
    assert first.usage.prompt_tokens > 0


def test_models_lists_configured_names(app: RunningApp) -> None:
    names = {m.id for m in app.client().models.list()}
    assert {"default", "local-only", "embeddings"} <= names


def test_health_and_ready(app: RunningApp) -> None:
    assert httpx.get(f"{app.root}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{app.root}/ready")
    assert ready.status_code == 200 and ready.json()["backends"]["local"] is True


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_model_is_404(app: RunningApp) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        app.client().chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'{"model": "local-only", "messages": "not a list"}',
        b'{"model": "local-only", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}',
        b'{"model": "local-only", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
        b'{"messages": [{"role": "user", "content": "x"}]}',
    ],
)
def test_malformed_bodies_are_400(app: RunningApp, body: bytes) -> None:
    response = httpx.post(
        f"{app.base_url}/chat/completions", content=body, headers={**app.headers(), "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert "Traceback" not in response.text


def test_error_does_not_echo_prompt(app: RunningApp) -> None:
    canary = "CANARY-7f3a9 wrong type here"
    body = {"model": "local-only", "messages": [{"role": "user", "content": canary}], "n": "many"}
    response = httpx.post(f"{app.base_url}/chat/completions", json=body, headers=app.headers())
    assert response.status_code == 400
    assert "CANARY" not in response.text


def test_body_over_limit_is_413(app: RunningApp) -> None:
    big = "x" * (app.config["server"]["max_body_bytes"] + 10)
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        headers=app.headers(),
        json={"model": "local-only", "messages": [{"role": "user", "content": big}]},
    )
    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"


def test_max_tokens_beyond_context_window_is_400(app: RunningApp) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        app.client().chat.completions.create(
            model="local-only", messages=[{"role": "user", "content": "x"}], max_tokens=100_000
        )
    assert info.value.status_code == 400


def test_unknown_path_is_enveloped_404(app: RunningApp) -> None:
    response = httpx.get(f"{app.root}/v1/nothing-here", headers=app.headers())
    assert response.status_code == 404
    _error(response)
