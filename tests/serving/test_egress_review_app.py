"""The egress review end to end: the real app (tiny vLLM engine, Ray Serve) with its review on by default, because a
non-sovereign backend is configured, and the loopback fake standing in for OpenAI.

Text with no marking and no identifier, which the rules call OFFICIAL, is answered locally on the route that prefers
the commercial backend when it is sensitive in meaning, and still reaches the commercial backend when it is general.
(With the review's model unavailable nothing leaves: tests/serving/test_egress_review_gateway.py, where the model
can be taken away without restarting a server.)
"""

from __future__ import annotations

import httpx
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from tests.support.app import RunningApp
from tests.support.audit import final_record

pytestmark = pytest.mark.engine

# The examples, each written afresh (so not a copy of a training item).
SENSITIVE = [
    (
        "semantic_covert_source",
        "Can you write up the tasking for the informant we run inside the Salford crime group? He needs to find out "
        "where they are storing the guns before his meeting with the handler on Thursday.",
    ),
    (
        "semantic_security_arrangements",
        "The camera covering the perimeter fence behind the workshops at HMP Eastwood has been out for a fortnight and "
        "nobody is watching that stretch at night. Write it up for the governor.",
    ),
    (
        "semantic_protected_person",
        "The witness we relocated last month has two kids who start at their new primary school on Monday under new "
        "names. Draft a note to the head asking them not to share anything with the father.",
    ),
    (
        "semantic_child",
        "A 14-year-old boy in foster care told his teacher yesterday that his carer hits him with a belt. Help me "
        "write the referral.",
    ),
    (
        "semantic_health",
        "The man in cell 14 tried to hang himself last night and he's on sertraline. What should we ask the doctor "
        "about his medication this morning?",
    ),
    (
        "semantic_operational_plan",
        "Turn this into a proper briefing: we hit the address at 5am tomorrow, entry team through the front, dogs "
        "covering the garden, arrest team straight up to the back bedroom.",
    ),
]
BENIGN = [
    "Explain what a CHIS is under RIPA.",
    "Write a public leaflet on witness protection.",
    "What does a youth offending team do?",
    "Summarise the main principles of perimeter security for a prison, for an essay.",
]


def _chat(app: RunningApp, content: str, model: str = "commercial-first") -> httpx.Response:
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{app.base_url}/chat/completions", json=body, headers=app.headers(), timeout=120)


@pytest.mark.parametrize(("signal", "content"), SENSITIVE, ids=[s for s, _ in SENSITIVE])
def test_sensitive_meaning_is_answered_locally(
    app: RunningApp, commercial: FakeOpenAIServer, signal: str, content: str
) -> None:
    response = _chat(app, content)
    assert response.status_code == 200, response.text
    assert response.headers["x-sovereign-backend"] == "local"
    assert response.headers["x-sovereign-classification"] == "OFFICIAL-SENSITIVE"
    assert commercial.received == []
    record = final_record(app.audit_path, response.headers["x-request-id"])
    types = {s["type"] for s in record["signals"]}
    assert signal in types, types
    assert any(t.startswith("semantic_score_0.") for t in types)
    assert record["level"] == "OFFICIAL-SENSITIVE"


@pytest.mark.parametrize("content", BENIGN)
def test_general_text_on_the_same_topics_still_reaches_commercial(
    app: RunningApp, commercial: FakeOpenAIServer, content: str
) -> None:
    response = _chat(app, content)
    assert response.status_code == 200, response.text
    assert response.headers["x-sovereign-backend"] == "commercial"
    assert response.headers["x-sovereign-classification"] == "OFFICIAL"
    assert len(commercial.received) == 1


def test_sensitive_meaning_on_a_commercial_only_route_is_refused(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    response = _chat(app, SENSITIVE[3][1], model="commercial-only")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_cleared_backend_available"
    assert commercial.received == []
