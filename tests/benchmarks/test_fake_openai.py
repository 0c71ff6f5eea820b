"""The fake OpenAI server, driven by the official ``openai`` SDK as real callers would."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import openai
import pytest
from openai.types.responses import Response

from benchmarks.fake_openai import EMBEDDING_DIM, FakeOpenAIServer, embedding_vector


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(fake):
    return openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0, timeout=5)


def test_chat_plain(client, fake):
    resp = client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hello there world"}], max_tokens=3
    )
    assert resp.model == "gpt-x"
    assert resp.choices[0].message.content == "fake0 fake1 fake2"
    assert resp.choices[0].finish_reason == "length"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (3, 3, 6)


def test_chat_default_length_and_stop(client):
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert resp.usage.completion_tokens == 8
    assert resp.choices[0].finish_reason == "stop"


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "a b"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake0 fake1 fake2 fake3"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 2
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_chat_stream_without_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], max_tokens=2, stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_completions_plain_and_stream(client):
    resp = client.completions.create(model="m", prompt="one two", max_tokens=2)
    assert resp.choices[0].text == "fake0 fake1"
    assert resp.usage.prompt_tokens == 2
    chunks = list(
        client.completions.create(
            model="m", prompt="one", max_tokens=3, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "fake0 fake1 fake2"
    assert chunks[-1].usage.completion_tokens == 3


def test_embeddings_deterministic_and_lists(client):
    one = client.embeddings.create(model="e", input="same text")
    again = client.embeddings.create(model="e", input="same text")
    many = client.embeddings.create(model="e", input=["same text", "other"])
    assert len(one.data[0].embedding) == EMBEDDING_DIM
    assert one.data[0].embedding == pytest.approx(again.data[0].embedding)
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == pytest.approx(one.data[0].embedding)
    assert many.data[1].embedding != pytest.approx(one.data[0].embedding)
    floats = client.embeddings.create(model="e", input="same text", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(embedding_vector("same text"), abs=1e-6)


def test_responses_plain(client, fake):
    resp = client.responses.create(model="gpt-x", input="hello there world", instructions="be brief")
    assert Response.model_validate(resp.model_dump()).status == "completed"
    assert resp.model == "gpt-x"
    assert resp.output_text == "fake0 fake1 fake2 fake3 fake4 fake5 fake6 fake7"
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (5, 8, 13)
    limited = client.responses.create(model="m", input=[{"role": "user", "content": "x"}], max_output_tokens=2)
    assert (limited.status, limited.incomplete_details.reason, limited.output_text) == (
        "incomplete",
        "max_output_tokens",
        "fake0 fake1",
    )
    assert fake.received[0]["path"] == "/v1/responses"


def test_responses_stream_events(client, fake):
    events = list(client.responses.create(model="m", input="a b", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 8,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = Response.model_validate(events[-1].response.model_dump())
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text
    assert final.usage.input_tokens == 2
    with httpx.Client() as http:
        raw = http.post(f"{fake.base_url}/responses", json={"model": "m", "input": "x", "stream": True}).text
    blocks = raw.split("\n\n")[:-1]
    assert all(b.startswith("event: response.") and "\ndata: {" in b for b in blocks)
    assert "[DONE]" not in raw


def test_responses_stored_retrieve_delete_cancel(client, fake):
    stored = client.responses.create(model="m", input="x")
    assert client.responses.retrieve(stored.id).output_text == stored.output_text
    unstored = client.responses.create(model="m", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError):  # only a background response can be cancelled
        client.responses.cancel(stored.id)
    background = client.responses.create(model="m", input="x", background=True)
    assert background.status == "queued"
    assert client.responses.cancel(background.id).status == "cancelled"
    assert client.responses.retrieve(background.id).status == "cancelled"
    with httpx.Client() as http:
        deleted = http.delete(f"{fake.base_url}/responses/{stored.id}")
    assert deleted.json() == {"id": stored.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(stored.id)
    paths = [(e["method"], e["path"]) for e in fake.received]
    assert ("GET", f"/v1/responses/{stored.id}") in paths
    assert ("POST", f"/v1/responses/{background.id}/cancel") in paths
    assert fake.received[1]["body"] is None  # a GET has no body
    assert fake.received[2]["body"]["store"] is False


def test_responses_faults(client, fake):
    fake.set_fault("broken_stream")
    got = []
    with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
        for event in client.responses.create(model="m", input="x", stream=True):
            got.append(event.type)
    assert got == ["response.created", "response.in_progress"]
    fake.set_fault("status", status=500)
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="m", input="x")
    with pytest.raises(openai.InternalServerError):
        client.responses.retrieve("resp_1")


def test_models(client):
    assert [m.id for m in client.models.list()] == ["fake"]


def test_records_requests(client, fake):
    client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "payload 123"}],
        extra_headers={"X-Sovereign-Classification": "OFFICIAL"},
    )
    (entry,) = fake.received
    assert entry["method"] == "POST"
    assert entry["path"] == "/v1/chat/completions"
    assert entry["headers"]["authorization"] == "Bearer sk-test"
    assert entry["headers"]["x-sovereign-classification"] == "OFFICIAL"
    assert entry["body"]["messages"][0]["content"] == "payload 123"


def test_http_control_endpoints(fake, client):
    with httpx.Client(base_url=fake.url) as http:
        assert http.post("/_fake/fault", json={"mode": "status", "status": 503}).status_code == 200
        with pytest.raises(openai.InternalServerError):
            client.models.list()
        assert http.get("/_fake/received").json()[0]["path"] == "/v1/models"
        assert http.post("/_fake/fault", json={"mode": "nonsense"}).status_code == 400
        assert http.post("/_fake/reset").status_code == 200
    assert fake.received == []
    assert client.models.list().data


def test_fault_status_envelope_and_retry_after(fake, client):
    fake.set_fault("status", status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "7"
    assert set(err.value.response.json()["error"]) == {"message", "type", "param", "code"}
    fake.set_fault("status", status=400)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt="x")
    fake.set_fault("status", status=500)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="e", input="x")


def test_fault_slow_delays_first_byte(fake, client):
    fake.set_fault("slow", delay_s=0.3)
    started = time.monotonic()
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content
    assert time.monotonic() - started >= 0.3  # the injected delay is a lower bound, not a timing benchmark


def test_fault_broken_stream(fake, client):
    fake.set_fault("broken_stream")
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], max_tokens=6, stream=True
    )
    got = []
    with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
        for chunk in stream:
            got.append(chunk)
    assert 0 < len(got) < 6
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_fault_garbage(fake, client):
    fake.set_fault("garbage")
    with httpx.Client() as http:
        resp = http.post(f"{fake.base_url}/chat/completions", json={"model": "m", "stream": True, "messages": []})
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert "[DONE]" not in resp.text
    with pytest.raises((openai.APIResponseValidationError, ValueError)):  # the SDK surfaces a JSONDecodeError
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_fault_hang_times_out(fake):
    fake.set_fault("hang")
    client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    fake.set_fault("ok")
    assert client.models.list().data


def test_standalone_module(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.fake_openai", "--port", str(port)])
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert client.models.list().data[0].id == "fake"
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
