"""The Responses API through the official ``openai`` SDK over HTTP, on the shared app: the tiny CPU engine (with
vLLM's response store on: ``store_responses``) and the loopback fake of OpenAI.

What is checked: the SDK's own types parse every answer (plain, streamed, retrieved, deleted); ids are the
router's, and resolve only for the caller they were issued to; a continuation stays on the backend that holds the
earlier turn, and a turn held locally is never continued at the commercial backend; `store` is false at the
commercial backend; everything a request carries is classified as for chat.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from benchmarks.fake_openai import FakeOpenAIServer
from tests.support.app import RunningApp
from tests.support.audit import final_record

pytestmark = pytest.mark.engine

NHS = "943 476 5919"  # a valid NHS number (mod 11): personal data, OFFICIAL-SENSITIVE


def _create(app: RunningApp, caller: str = "tester", **body: Any) -> tuple[Response, httpx.Headers]:
    raw = app.client(caller).responses.with_raw_response.create(**body)
    return raw.parse(), raw.headers


def test_plain_response_on_the_local_engine(app: RunningApp) -> None:
    response, headers = _create(app, model="local-only", input="Say hello", max_output_tokens=8)
    assert headers["x-sovereign-backend"] == "local"
    assert response.id.startswith("resp_") and response.status in ("completed", "incomplete")  # random weights
    assert response.usage is not None and response.usage.output_tokens > 0
    record = final_record(app.audit_path, headers["x-request-id"])
    assert record["endpoint"] == "/v1/responses" and record["backend"] == "local"
    assert record["prompt_tokens"] and record["completion_tokens"]


def test_streamed_response_events_parse_and_carry_the_routers_id(app: RunningApp) -> None:
    with app.client().responses.create(
        model="local-only", input="Count to three", max_output_tokens=8, stream=True
    ) as stream:
        events = list(stream)
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in types
    created, completed = events[0], events[-1]
    assert created.response.id == completed.response.id and completed.response.id.startswith("resp_")
    assert completed.response.usage is not None


def test_a_continuation_stays_on_the_backend_holding_the_earlier_turn(app: RunningApp) -> None:
    first, _ = _create(app, model="local-only", input="My name is Ada", max_output_tokens=4)
    second, headers = _create(
        app, model="default", input="What is my name?", previous_response_id=first.id, max_output_tokens=4
    )
    assert headers["x-sovereign-backend"] == "local"
    assert second.previous_response_id == first.id and second.id != first.id
    assert app.client().responses.retrieve(second.id).id == second.id


def test_a_local_turn_is_never_continued_at_the_commercial_backend(
    app: RunningApp, commercial: FakeOpenAIServer
) -> None:
    first, _ = _create(app, model="local-only", input="Hello", max_output_tokens=4)
    with pytest.raises(openai.BadRequestError) as refused:
        app.client().responses.create(model="commercial-only", input="Go on", previous_response_id=first.id)
    assert isinstance(refused.value.body, dict) and refused.value.body["param"] == "previous_response_id"
    # On a route that prefers the commercial backend, the continuation still goes to the engine that holds it.
    _, headers = _create(
        app, model="commercial-first", input="Go on", previous_response_id=first.id, max_output_tokens=4
    )
    assert headers["x-sovereign-backend"] == "local"
    assert commercial.received == []


@pytest.mark.parametrize("forged", ["resp_abc", "resp_WyJsb2NhbCIsIngiXQ.AAAAAAAAAAAAAAAAAAAAAA", "x" * 5000, ""])
def test_unknown_or_forged_ids_are_404(app: RunningApp, forged: str) -> None:
    with pytest.raises(openai.NotFoundError):
        app.client().responses.create(model="local-only", input="Hi", previous_response_id=forged)
    if forged:
        with pytest.raises(openai.NotFoundError):
            app.client().responses.retrieve(forged)


def test_an_id_resolves_only_for_the_caller_it_was_issued_to(app: RunningApp) -> None:
    mine, _ = _create(app, model="local-only", input="Hello", max_output_tokens=4)
    with pytest.raises(openai.NotFoundError):
        app.client("team-a1").responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        app.client("team-a1").responses.create(model="local-only", input="Hi", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        app.client("team-a1").responses.delete(mine.id)
    assert app.client().responses.retrieve(mine.id).id == mine.id  # still there for its owner


def test_retrieve_delete_and_cancel(app: RunningApp) -> None:
    response, _ = _create(app, model="local-only", input="Hello", max_output_tokens=4)
    client = app.client()
    assert Response.model_validate(client.responses.retrieve(response.id).model_dump()).id == response.id
    with pytest.raises(openai.BadRequestError):  # finished and not run in the background: nothing to cancel
        client.responses.cancel(response.id)
    deleted = httpx.delete(f"{app.base_url}/responses/{response.id}", headers=app.headers(), timeout=60)
    assert deleted.status_code == 200 and deleted.json() == {
        "id": response.id,
        "object": "response.deleted",
        "deleted": True,
    }
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):  # nor can it be continued
        client.responses.create(model="local-only", input="Hi", previous_response_id=response.id)


def test_store_is_forced_off_at_the_commercial_backend(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    response, headers = _create(app, model="commercial-first", input="Suggest a name for a cat", store=True)
    assert headers["x-sovereign-backend"] == "commercial"
    [received] = commercial.received
    assert received["body"]["store"] is False and received["body"]["model"] == "gpt-fake"
    assert response.id.startswith("resp_")


@pytest.mark.parametrize(
    "body",
    [
        {"input": f"Patient NHS number {NHS}, please summarise"},
        {"input": "Summarise the attached", "instructions": "Handle as OFFICIAL-SENSITIVE"},
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": f"NHS {NHS}"}]}]},
        {"input": "hi", "tools": [{"type": "function", "name": "lookup", "description": f"NHS {NHS}",
                                   "parameters": {"type": "object", "properties": {}}}]},
    ],
)  # fmt: skip
def test_everything_a_request_carries_is_classified(
    app: RunningApp, commercial: FakeOpenAIServer, body: dict[str, Any]
) -> None:
    response, headers = _create(app, model="commercial-first", max_output_tokens=4, **body)
    assert headers["x-sovereign-backend"] == "local"
    assert headers["x-sovereign-classification"] != "OFFICIAL"
    assert commercial.received == []
    assert response.id.startswith("resp_")


def test_conversations_are_refused_clearly(app: RunningApp) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        app.client().responses.create(model="local-only", input="Hi", conversation=f"conv_{uuid.uuid4().hex}")
    assert isinstance(refused.value.body, dict) and refused.value.body["param"] == "conversation"


def test_models_list_the_responses_endpoint(app: RunningApp) -> None:
    models = {m.id: m.model_extra["endpoints"] for m in app.client().models.list().data}
    assert "/v1/responses" in models["local-only"] and "/v1/responses" in models["default"]
    assert "/v1/responses" not in models["embeddings"]
