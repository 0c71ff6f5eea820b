"""The Responses API through the gateway in this process (no Ray): a sovereign fake ("uk") and a commercial fake,
the official ``openai`` SDK over HTTP. The real engine's side is tests/serving/test_responses_api.py.

Checked here: streams through an OpenAI-compatible backend parse with the SDK and carry the router's ids; a
continuation reaches the holding backend with that backend's own id, even on a route that prefers another, and a
turn held at the commercial backend is refused a continuation that is no longer OFFICIAL; stored responses are
fetched and deleted at the holder; every step is audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.inprocess import InProcessGateway, gateway_config, running_gateway

NHS = "943 476 5919"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    with running_gateway(tmp_path_factory.mktemp("responses"), keys={"other": {}}) as running:
        yield running


@pytest.fixture
def client(gw: InProcessGateway) -> openai.OpenAI:
    for fake in (gw.uk, gw.commercial):
        fake.reset()
        fake.set_fault("ok")
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def test_a_stream_through_the_commercial_backend(gw: InProcessGateway, client: openai.OpenAI) -> None:
    with client.responses.create(model="commercial-only", input="Name a cat", stream=True) as stream:
        events = list(stream)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    issued = events[-1].response.id
    assert issued.startswith("resp_") and events[0].response.id == issued
    [received] = gw.commercial.received
    assert received["body"]["store"] is False and received["body"]["stream"] is True
    assert gw.gateway.router.response_ids.resolve(issued, "tester") is not None


def test_a_continuation_reaches_the_holder_with_its_own_id(gw: InProcessGateway, client: openai.OpenAI) -> None:
    first = client.responses.create(model="default", input="Hello")  # the uk fake, first on the route
    held_at, upstream = gw.gateway.router.response_ids.resolve(first.id, "tester") or ("", "")
    assert held_at == "uk"
    second = client.responses.create(model="commercial-first", input="Go on", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert gw.commercial.received == []  # the route prefers the commercial backend; the turn is held at uk
    assert gw.uk.received[-1]["body"]["previous_response_id"] == upstream


def test_a_commercial_turn_is_not_continued_with_personal_data(gw: InProcessGateway, client: openai.OpenAI) -> None:
    first = client.responses.create(model="commercial-only", input="Name a cat")
    with pytest.raises(openai.PermissionDeniedError):
        client.responses.create(model="commercial-first", input=f"NHS {NHS}", previous_response_id=first.id)
    assert len(gw.commercial.received) == 1  # the first turn only: no fallback elsewhere either
    assert gw.uk.received == []


def _storing(workdir: Path, uk_url: str, commercial_url: str) -> dict[str, Any]:
    """The usual configuration, with storage at the commercial provider allowed (``store_responses``)."""
    config = gateway_config(workdir, uk_url, commercial_url)
    config["backends"][1]["store_responses"] = True
    return config


def test_retrieve_and_delete_at_the_holder(tmp_path: Path) -> None:
    with running_gateway(tmp_path, keys={"other": {}}, config_for=_storing) as gw:
        _retrieve_and_delete(gw, openai.OpenAI(base_url=gw.base_url, api_key=gw.key, max_retries=0))


def _retrieve_and_delete(gw: InProcessGateway, client: openai.OpenAI) -> None:
    made = client.responses.create(model="commercial-only", input="Name a cat", store=True)
    assert gw.commercial.received[-1]["body"]["store"] is True  # allowed by this configuration
    assert client.responses.retrieve(made.id).id == made.id
    other = openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["other"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(made.id)
    deleted = httpx.delete(f"{gw.base_url}/responses/{made.id}", headers=gw.headers, timeout=30)
    assert deleted.status_code == 200 and deleted.json()["id"] == made.id
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    operations = [r["endpoint"] for r in gw.records() if r["event"] == "request"]
    assert {"/v1/responses:retrieve", "/v1/responses:delete"} <= set(operations)
