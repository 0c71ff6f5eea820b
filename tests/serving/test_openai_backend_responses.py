"""The OpenAI backend's Responses API against the loopback fake: plain and streamed (its typed events, read back with
the official SDK's types), ``store`` forced off unless the backend's configuration allows storage at the provider,
usage for the audit record, a stream that fails or never ends, and stored responses fetched, cancelled and deleted
by an id that is checked before it is put in a URL. No engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from benchmarks.fake_openai import FakeOpenAIServer
from serving.backends.base import BackendFailure, BackendRefusal, Endpoint, Opened, Usage
from serving.backends.openai_http import OpenAIBackend, _ResponseFrames, _sse_events
from serving.config import OpenAIBackendConfig
from serving.errors import BadRequest

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
R = TypeVar("R")
ACTIONS: tuple[Literal["retrieve", "delete", "cancel"], ...] = ("retrieve", "delete", "cancel")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def fake(server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    server.reset()
    yield server
    server.reset()


def _with_backend(fake: FakeOpenAIServer, use: Callable[[OpenAIBackend], Awaitable[R]], **config: Any) -> R:
    """Run ``use`` with a backend to the fake, in its own event loop (the SDK's transport belongs to one)."""
    settings = OpenAIBackendConfig.model_validate(
        {"name": "commercial", "kind": "openai", "model": "gpt-x", "base_url": fake.base_url, "api_key_env": None}
        | config
    )

    async def run() -> R:
        backend = OpenAIBackend(settings)
        try:
            return await use(backend)
        finally:
            await backend.close()

    return asyncio.run(run())


async def _open(backend: OpenAIBackend, body: dict[str, Any]) -> Opened:
    backend.validate(Endpoint.RESPONSES, body)
    return await backend.open(Endpoint.RESPONSES, body, request_id="req-1", trace_headers={})


async def _read(backend: OpenAIBackend, body: dict[str, Any]) -> tuple[list[str], Usage]:
    """The streamed events as the backend forwards them (one string per upstream read), and the usage recorded."""
    opened = await _open(backend, {**body, "stream": True})
    assert opened.chunks is not None and opened.body is None
    return [chunk async for chunk in opened.chunks], opened.usage


def _parse(chunks: list[str]) -> list[ResponseStreamEvent]:
    """Each SSE event: ``event: <type>`` then its data, as the SDK's event types."""
    events = []
    for block in "".join(chunks).split("\n\n")[:-1]:
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = EVENTS.validate_python(json.loads(data.removeprefix("data: ")))
        assert event.type == name.removeprefix("event: ")
        events.append(event)
    assert "".join(chunks).endswith("\n\n")
    return events


# -- requests ---------------------------------------------------------------------------------------------------


def test_the_backend_serves_responses_and_checks_input() -> None:
    backend = OpenAIBackend(OpenAIBackendConfig.model_validate({"name": "c", "kind": "openai", "model": "m"}))
    assert backend.serves(Endpoint.RESPONSES)
    backend.validate(Endpoint.RESPONSES, {"input": "hello"})
    backend.validate(Endpoint.RESPONSES, {"input": [{"role": "user", "content": "hello"}]})
    bodies: list[dict[str, Any]] = [{}, {"input": []}, {"input": 3}, {"input": None}, {"input": {"role": "user"}}]
    for bad in bodies:
        with pytest.raises(BadRequest) as err:
            backend.validate(Endpoint.RESPONSES, bad)
        assert err.value.param == "input"


def test_plain_response_with_store_forced_off_and_usage(fake: FakeOpenAIServer) -> None:
    body = {"model": "caller-model", "input": "one two three", "instructions": "be brief", "store": True}
    opened = _with_backend(fake, lambda backend: _open(backend, body))
    assert opened.body is not None and opened.chunks is None
    response = Response.model_validate(opened.body)
    assert response.output_text == "fake0 fake1 fake2 fake3 fake4 fake5 fake6 fake7"
    assert response.model == "gpt-x"
    assert (opened.usage.prompt_tokens, opened.usage.completion_tokens) == (5, 8)
    (entry,) = fake.received
    assert (entry["method"], entry["path"]) == ("POST", "/v1/responses")
    assert entry["body"] == {**body, "model": "gpt-x", "store": False}
    assert "stream_options" not in entry["body"]


def test_store_is_passed_through_where_the_configuration_allows_it(fake: FakeOpenAIServer) -> None:
    async def three(backend: OpenAIBackend) -> list[Opened]:
        return [await _open(backend, {"input": "x", **store}) for store in ({}, {"store": True}, {"store": False})]

    opened = _with_backend(fake, three, store_responses=True)
    assert [entry["body"].get("store", "absent") for entry in fake.received] == ["absent", True, False]
    assert [o.body["store"] for o in opened if o.body] == [True, True, False]  # the API's default is to store


def test_streamed_response_events_parse_with_the_sdk_types(fake: FakeOpenAIServer) -> None:
    body: dict[str, Any] = {"input": [{"role": "user", "content": "a b"}], "max_output_tokens": 3}
    # A sovereign backend asks chat streams for usage; a Responses stream has no such option and needs none.
    chunks, usage = _with_backend(fake, lambda backend: _read(backend, body), sovereign=True)
    events = _parse(chunks)
    sdk = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
    direct = sdk.responses.create(model="m", input=body["input"], max_output_tokens=3, stream=True)
    assert [e.type for e in events] == [e.type for e in direct]  # every event, as the provider sent it
    assert [e.type for e in events].count("response.output_text.delta") == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.incomplete"
    Response.model_validate(final.response.model_dump())
    assert final.response.output_text == "fake0 fake1 fake2"  # limited by max_output_tokens, like chat's "length"
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 3)
    sent = fake.received[0]["body"]
    assert sent["store"] is False and "stream_options" not in sent


def test_a_stream_ends_at_its_completed_event(fake: FakeOpenAIServer) -> None:
    chunks, usage = _with_backend(fake, lambda backend: _read(backend, {"input": "hello"}))
    events = _parse(chunks)
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == events[-1].response.output_text
    assert (usage.prompt_tokens, usage.completion_tokens) == (1, 8)


# -- failures ---------------------------------------------------------------------------------------------------


def test_a_stream_cut_before_its_terminal_event_is_a_failure(fake: FakeOpenAIServer) -> None:
    fake.set_fault("broken_stream")
    with pytest.raises(BackendFailure) as err:
        _with_backend(fake, lambda backend: _read(backend, {"input": "hello"}))
    assert err.value.reason in ("stream_broken", "stream_truncated")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("status", "expected"), [(503, BackendFailure), (429, BackendFailure), (400, BackendRefusal)])
def test_upstream_statuses(fake: FakeOpenAIServer, status: int, expected: type[Exception], stream: bool) -> None:
    fake.set_fault("status", status=status)
    with pytest.raises(expected) as err:
        _with_backend(fake, lambda backend: _open(backend, {"input": "hello", "stream": stream}))
    if isinstance(err.value, BackendRefusal):
        assert "injected" not in json.dumps(err.value.envelope)  # the upstream's words never reach the caller


def _frames(*lines: bytes) -> tuple[list[str], Usage]:
    """What the reader forwards of a Responses stream made of ``lines`` (one read each)."""

    async def body() -> AsyncIterator[bytes]:
        for line in lines:
            yield line

    async def collect() -> tuple[list[str], Usage]:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())
        usage = Usage()
        return [event async for event in _sse_events(response, _ResponseFrames(usage))], usage

    return asyncio.run(collect())


def _sse(obj: dict[str, Any]) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


CREATED = _sse({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1"}})
DELTA = _sse({"type": "response.output_text.delta", "sequence_number": 1, "delta": "hi"})
USAGE = {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (
            (CREATED, _sse({"type": "error", "sequence_number": 1, "code": "server_error", "message": "x"})),
            "upstream_stream_error",
        ),
        ((CREATED, DELTA), "stream_truncated"),
        ((CREATED, b"data: [DONE]\n\n"), "bad_stream"),  # chat's end is not this stream's
        ((CREATED, b'data: {"type": "x\\ndata: {}"}\n\n'), "bad_stream"),  # a type that would write its own events
        ((CREATED, b'data: {"delta": "no type"}\n\n'), "bad_stream"),
        ((CREATED, b"data: [1, 2]\n\n"), "bad_stream"),
    ],
)
def test_stream_failures(lines: tuple[bytes, ...], reason: str) -> None:
    with pytest.raises(BackendFailure) as err:
        _frames(*lines)
    assert err.value.reason == reason


def test_terminal_events_end_the_stream_and_carry_its_usage() -> None:
    for terminal in ("response.completed", "response.incomplete", "response.failed"):
        last = _sse({"type": terminal, "sequence_number": 2, "response": {"id": "resp_1", "usage": USAGE}})
        chunks, usage = _frames(CREATED + DELTA, last + b"\n" * 3 + DELTA * 10_000)
        assert "".join(chunks) == (CREATED + DELTA + last).decode()  # nothing after it is forwarded
        assert (usage.prompt_tokens, usage.completion_tokens) == (4, 2)


# -- stored responses -------------------------------------------------------------------------------------------


def test_retrieve_cancel_and_delete_at_the_provider(fake: FakeOpenAIServer) -> None:
    async def round_trip(backend: OpenAIBackend) -> list[dict[str, Any] | None]:
        created = (await _open(backend, {"input": "x", "background": True})).body
        assert created is not None
        upstream_id = created["id"]
        bodies = [
            (await backend.stored("retrieve", upstream_id, request_id="r")).body,
            (await backend.stored("cancel", upstream_id, request_id="r")).body,
            (await backend.stored("delete", upstream_id, request_id="r")).body,
        ]
        with pytest.raises(BackendRefusal) as gone:
            await backend.stored("retrieve", upstream_id, request_id="r")
        assert gone.value.status == 404
        assert upstream_id not in json.dumps(gone.value.envelope)  # the upstream's message is not passed on
        return bodies

    retrieved, cancelled, deleted = _with_backend(fake, round_trip, store_responses=True)
    assert retrieved is not None and cancelled is not None and deleted is not None
    assert Response.model_validate(retrieved).status == "queued"
    assert Response.model_validate(cancelled).status == "cancelled"
    assert deleted == {"id": retrieved["id"], "object": "response.deleted", "deleted": True}
    rid = retrieved["id"]
    assert [(e["method"], e["path"]) for e in fake.received] == [
        ("POST", "/v1/responses"),
        ("GET", f"/v1/responses/{rid}"),
        ("POST", f"/v1/responses/{rid}/cancel"),
        ("DELETE", f"/v1/responses/{rid}"),
        ("GET", f"/v1/responses/{rid}"),
    ]


def test_a_response_not_stored_is_not_found(fake: FakeOpenAIServer) -> None:
    async def create_then_get(backend: OpenAIBackend) -> None:
        created = (await _open(backend, {"input": "x", "store": True})).body  # forced off: nothing is kept
        assert created is not None
        await backend.stored("retrieve", created["id"], request_id="r")

    with pytest.raises(BackendRefusal) as err:
        _with_backend(fake, create_then_get)
    assert err.value.status == 404


def test_stored_failures_are_failures(fake: FakeOpenAIServer) -> None:
    fake.set_fault("status", status=503)
    with pytest.raises(BackendFailure) as err:
        _with_backend(fake, lambda backend: backend.stored("retrieve", "resp_1", request_id="r"))
    assert err.value.reason == "http_503"


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("bad", ["", "../models", "resp_1/cancel", "resp_1?x=1", "resp 1", "resp_1\n", "r" * 257, "é"])
def test_an_id_that_is_not_an_id_never_reaches_the_provider(
    fake: FakeOpenAIServer, bad: str, action: Literal["retrieve", "delete", "cancel"]
) -> None:
    with pytest.raises(BackendRefusal) as err:
        _with_backend(fake, lambda backend: backend.stored(action, bad, request_id="r"))
    assert err.value.status == 404
    assert err.value.envelope["error"]["code"] == "not_found"
    assert err.value.envelope["error"]["param"] == "response_id"
    assert fake.received == []
