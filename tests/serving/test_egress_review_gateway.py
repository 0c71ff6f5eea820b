"""The egress review in the gateway: before the first non-sovereign attempt, only then, and failing closed.

The gateway runs in this process (no Ray) with two loopback fakes: "uk" (sovereign) and "commercial" (standing in
for OpenAI), so what reached the commercial side is known exactly. The review uses the shipped artefact and MiniLM.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from routing.egress_review import raise_level
from serving.config import load_settings
from tests.support.audit import final_record
from tests.support.inprocess import InProcessGateway, running_gateway

SENSITIVE = (
    "A 14-year-old girl in foster care disclosed to her teacher yesterday that her foster carer's son has "
    "been abusing her. Help me write the referral."
)
BENIGN = "Write a public leaflet on witness protection: who can be protected and how to ask about it."


def _chat(gw: InProcessGateway, model: str, content: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{gw.base_url}/chat/completions", json=body, headers=gw.headers, timeout=30)


def _signals(record: dict[str, Any]) -> set[str]:
    return {s["type"] for s in record["signals"]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_gateway(tmp_path_factory.mktemp("egress")) as running:
        yield running


@pytest.fixture
def fresh(gw: InProcessGateway) -> InProcessGateway:
    gw.uk.reset()
    gw.commercial.reset()
    return gw


@pytest.mark.parametrize("stream", [False, True])
def test_flagged_request_is_answered_locally_and_never_reaches_commercial(
    fresh: InProcessGateway, stream: bool
) -> None:
    response = _chat(fresh, "commercial-first", SENSITIVE, stream=stream)
    assert response.status_code == 200
    assert response.headers["x-sovereign-backend"] == "uk"
    assert response.headers["x-sovereign-classification"] == "OFFICIAL-SENSITIVE"
    assert fresh.commercial.received == []
    assert len(fresh.uk.received) == 1
    record = final_record(fresh.audit_path, response.headers["x-request-id"])
    assert record["level"] == "OFFICIAL-SENSITIVE" and record["detected_level"] == "OFFICIAL-SENSITIVE"
    signals = _signals(record)
    assert "semantic_child" in signals
    assert any(s.startswith("semantic_score_0.") for s in signals)
    assert "foster" not in json.dumps(record)  # type and count only, never text
    assert [a["backend"] for a in record["attempts"]] == ["uk"]  # the commercial backend was never tried
    metrics = fresh.gateway.metrics
    assert metrics.egress_reviews.labels("flagged")._value.get() >= 1
    assert metrics.egress_review_time._sum.get() > 0


def test_flagged_request_with_no_sovereign_candidate_gets_503(fresh: InProcessGateway) -> None:
    response = _chat(fresh, "commercial-only", SENSITIVE)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_cleared_backend_available"
    assert "foster" not in response.text
    assert fresh.commercial.received == []


def test_benign_same_topic_request_still_goes_to_commercial(fresh: InProcessGateway) -> None:
    response = _chat(fresh, "commercial-first", BENIGN)
    assert response.status_code == 200
    assert response.headers["x-sovereign-backend"] == "commercial"
    assert response.headers["x-sovereign-classification"] == "OFFICIAL"
    assert len(fresh.commercial.received) == 1
    record = final_record(fresh.audit_path, response.headers["x-request-id"])
    assert not any(s.startswith("semantic_") for s in _signals(record))


def test_local_first_route_never_runs_the_review(fresh: InProcessGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    async def spy(body: Any) -> None:
        calls.append(body)

    monkeypatch.setattr(fresh.gateway.egress, "check", spy)
    response = _chat(fresh, "default", SENSITIVE)  # route [uk, commercial]: uk answers first
    assert response.headers["x-sovereign-backend"] == "uk"
    assert calls == []
    fresh.uk.set_fault("status", status=503)  # now the commercial candidate is reached: the review runs first
    _chat(fresh, "default", BENIGN)
    assert len(calls) == 1


def test_review_runs_once_per_request(fresh: InProcessGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    original = fresh.gateway.egress.check
    calls: list[Any] = []

    async def counting(body: Any) -> Any:
        calls.append(body)
        return await original(body)

    monkeypatch.setattr(fresh.gateway.egress, "check", counting)
    fresh.commercial.set_fault("status", status=503)  # commercial fails, uk answers: one review, not two
    response = _chat(fresh, "commercial-first", BENIGN)
    assert response.headers["x-sovereign-backend"] == "uk"
    assert len(calls) == 1


@pytest.mark.parametrize("setting", [{"model": "/nonexistent/minilm"}, {"deadline_ms": 0.001}])
def test_unavailable_review_keeps_everything_local(tmp_path: Path, setting: dict[str, Any]) -> None:
    with running_gateway(tmp_path, egress_review=setting) as gw:
        response = _chat(gw, "commercial-first", BENIGN)
        assert response.status_code == 200
        assert response.headers["x-sovereign-backend"] == "uk"
        assert response.headers["x-sovereign-classification"] == "OFFICIAL-SENSITIVE"
        assert "semantic_review_unavailable" in _signals(final_record(gw.audit_path, response.headers["x-request-id"]))
        refused = _chat(gw, "commercial-only", BENIGN)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "no_cleared_backend_available"
        assert gw.commercial.received == []
        assert gw.gateway.metrics.egress_reviews.labels("unavailable")._value.get() == 2


def test_disabled_review_lets_official_text_leave(tmp_path: Path) -> None:
    with running_gateway(tmp_path, egress_review={"enabled": False}) as gw:
        response = _chat(gw, "commercial-first", SENSITIVE)
        assert response.headers["x-sovereign-backend"] == "commercial"


def test_raise_level_only_raises_and_keeps_rule_signals() -> None:
    from routing.classify import Classification, Signal
    from routing.levels import Level

    secret = Classification(Level.SECRET, Level.SECRET, None, (Signal("marking_secret", 1),))
    raised = raise_level(secret, ["semantic_child", "semantic_score_0.9"])
    assert raised.level is Level.SECRET
    assert [s.type for s in raised.signals] == ["marking_secret", "semantic_child", "semantic_score_0.9"]
    official = Classification(Level.OFFICIAL, Level.OFFICIAL, None, ())
    assert raise_level(official, ["semantic_review_unavailable"]).level is Level.OFFICIAL_SENSITIVE


def test_enabled_by_default_only_with_a_non_sovereign_backend(tmp_path: Path) -> None:
    local = {"name": "uk", "kind": "openai", "sovereign": True, "max_classification": "SECRET", "model": "m"}
    remote = {"name": "c", "kind": "openai", "sovereign": False, "max_classification": "OFFICIAL", "model": "m"}
    assert not load_settings(data={"backends": [local], "models": [{"name": "d", "route": ["uk"]}]}).egress_review_on
    assert load_settings(
        data={"backends": [local, remote], "models": [{"name": "d", "route": ["uk"]}]}
    ).egress_review_on
    assert not load_settings(
        data={
            "backends": [local, remote],
            "models": [{"name": "d", "route": ["uk"]}],
            "egress_review": {"enabled": False},
        }
    ).egress_review_on


def test_serve_refuses_to_start_when_the_review_cannot_load(tmp_path: Path) -> None:
    config = {
        "backends": [
            {
                "name": "c",
                "kind": "openai",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "model": "m",
                "api_key_env": "NO_SUCH_KEY",
            }
        ],
        "models": [{"name": "d", "route": ["c"]}],
        "audit": {"path": str(tmp_path / "audit.jsonl")},
        "egress_review": {"model": str(tmp_path / "missing-minilm")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing to start" in done.stderr and "egress review model" in done.stderr
