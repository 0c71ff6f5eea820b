"""The router core (serving/router.py) on its own: no HTTP, no Ray, no engine. Backends are scripted in memory and
the request is what admission would hand over (a caller and a parsed body); what it leaves is read from the audit
log the recorder writes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

from routing.audit import AuditLog
from routing.budgets import InProcessLedger
from routing.classify import classifier_digest
from routing.keys import Caller
from routing.levels import Level
from serving.backends.base import BackendFailure, BackendRefusal, Endpoint, Opened, Usage, error_envelope
from serving.config import Settings, load_settings
from serving.egress_gate import EgressGate
from serving.metrics import Metrics
from serving.recording import Recorder, RequestState
from serving.response_ids import ResponseIds, new_key
from serving.router import Outcome, Router, backend_policies, routing_policy_digest
from tests.support.audit import audit_records

CALLER = Caller("tester", None, None, None)
PERSONAL = "Refer the case of NHS number 943 476 5919 to the probation team."  # a valid check digit


class ScriptedBackend:
    """A backend whose answers are set by the test: a body, a stream, or an exception from ``open``."""

    def __init__(self, name: str, *, sovereign: bool, clearance: Level, answer: Any = None) -> None:
        self.name, self.sovereign, self.max_classification = name, sovereign, clearance
        self.answer = answer if answer is not None else {"id": name, "object": "chat.completion", "choices": []}
        self.available = True
        self.overloaded = False
        self.queue_depth: int | None = None
        self.opened: list[dict[str, Any]] = []

    def serves(self, endpoint: Endpoint) -> bool:
        return endpoint is Endpoint.CHAT

    def validate(self, endpoint: Endpoint, body: dict[str, Any]) -> Any:
        return None

    async def open(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        *,
        request_id: str,
        trace_headers: Mapping[str, str],
        parsed: Any = None,
    ) -> Opened:
        self.opened.append(body)
        if isinstance(self.answer, Exception):
            raise self.answer
        if isinstance(self.answer, list):
            self.stream = ScriptedChunks(self.answer)
            return Opened(chunks=self.stream, usage=Usage(3, len(self.answer)))
        return Opened(body=self.answer, usage=Usage(3, 1))

    async def stored(
        self, action: Literal["retrieve", "delete", "cancel"], upstream_id: str, *, request_id: str
    ) -> Opened:
        raise BackendRefusal(404, error_envelope("not found", "invalid_request_error", "not_found"))

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class ScriptedChunks:
    """A backend's started stream that says whether it was closed (the generation cancelled)."""

    def __init__(self, events: list[str]) -> None:
        self.events, self.closed = list(events), False

    def __aiter__(self) -> ScriptedChunks:
        return self

    async def __anext__(self) -> str:
        if self.closed or not self.events:
            raise StopAsyncIteration
        return self.events.pop(0)

    async def aclose(self) -> None:
        self.closed = True


def _settings(tmp_path: Path) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "keys.json").write_text('{"keys": []}')
    clearances = {"uk": ("SECRET", True), "uk-spare": ("SECRET", True), "commercial": ("OFFICIAL", False)}
    return load_settings(
        data={
            "audit": {"path": str(tmp_path / "audit.jsonl")},
            "auth": {"keys_file": str(tmp_path / "keys.json")},
            "egress_review": {"enabled": False},
            "backends": [
                {
                    "name": name,
                    "kind": "openai",
                    "sovereign": sovereign,
                    "max_classification": level,
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": None,
                    "model": "m",
                }
                for name, (level, sovereign) in clearances.items()
            ],
            "models": [
                {"name": "commercial-first", "route": ["commercial", "uk"]},
                {"name": "local", "route": ["uk", "uk-spare"]},
            ],
        }
    )


def _router(tmp_path: Path, backends: dict[str, ScriptedBackend]) -> tuple[Router, AuditLog]:
    settings = _settings(tmp_path)
    audit, metrics, ledger = AuditLog(settings.audit.path), Metrics(), InProcessLedger()
    egress, policies = EgressGate(settings), backend_policies(settings)
    recorder = Recorder(
        audit,
        metrics,
        ledger,
        policy_sha256=routing_policy_digest(settings, policies, egress),
        classifier_sha256=classifier_digest(),
        known_teams=(),
        models=("commercial-first", "local"),
    )
    router = Router(
        settings,
        backends,
        recorder,
        policies=policies,
        egress=egress,
        ledger=ledger,
        response_ids=ResponseIds(new_key()),
        metrics=metrics,
    )
    return router, audit


def _backends(**answers: Any) -> dict[str, ScriptedBackend]:
    return {
        "uk": ScriptedBackend("uk", sovereign=True, clearance=Level.SECRET, answer=answers.get("uk")),
        "uk-spare": ScriptedBackend("uk-spare", sovereign=True, clearance=Level.SECRET, answer=answers.get("spare")),
        "commercial": ScriptedBackend(
            "commercial", sovereign=False, clearance=Level.OFFICIAL, answer=answers.get("commercial")
        ),
    }


async def _route(router: Router, model: str, text: str, *, stream: bool = False) -> tuple[Outcome, RequestState]:
    """One request through the router as the HTTP edge sends it; its record written as the edge does."""
    state = RequestState(Endpoint.CHAT)
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    try:
        async with asyncio.timeout(30) as deadline:
            outcome = await router.route(state, CALLER, body, deadline)
    except Exception as exc:
        outcome = router.failed(state, exc)
    if outcome.stream is None:
        await router.recorder.finish(state)
    return outcome, state


def _run(tmp_path: Path, backends: dict[str, ScriptedBackend], model: str, text: str, **kw: Any) -> Any:
    async def main() -> tuple[Outcome, RequestState, list[str]]:
        router, audit = _router(tmp_path, backends)
        outcome, state = await _route(router, model, text, **kw)
        events = [event async for event in outcome.stream] if outcome.stream is not None else []
        await audit.aclose()
        return outcome, state, events

    outcome, state, events = asyncio.run(main())
    return outcome, state, events, audit_records(tmp_path / "audit.jsonl")


def test_personal_data_never_reaches_the_commercial_backend(tmp_path: Path) -> None:
    backends = _backends()
    outcome, _, _, records = _run(tmp_path, backends, "commercial-first", PERSONAL)
    assert outcome.status == 200 and outcome.body == {"id": "uk", "object": "chat.completion", "choices": []}
    assert backends["commercial"].opened == [] and len(backends["uk"].opened) == 1
    [record] = records
    assert record["event"] == "request" and record["backend"] == "uk" and record["level"] != "OFFICIAL"
    assert record["candidates"] == ["uk"]
    # No part of the prompt in the record (not a fragment such as "943": a record's timestamp may hold those digits).
    assert not any(part in str(records) for part in ("943 476 5919", "9434765919", "probation"))


def test_official_text_leaves_only_after_a_durable_egress_record(tmp_path: Path) -> None:
    backends = _backends()
    outcome, _, _, records = _run(tmp_path, backends, "commercial-first", "Name three colours of the rainbow.")
    assert outcome.status == 200 and outcome.headers["x-sovereign-backend"] == "commercial"
    assert [r["event"] for r in records] == ["egress", "request"]
    assert records[0]["backend"] == "commercial" and records[1]["level"] == "OFFICIAL"


def test_a_failed_candidate_falls_back_and_a_refusal_does_not(tmp_path: Path) -> None:
    failing = _backends(uk=BackendFailure("connect"))
    outcome, _, _, records = _run(tmp_path / "a", failing, "local", PERSONAL)
    assert outcome.status == 200 and outcome.headers["x-sovereign-backend"] == "uk-spare"
    assert [(a["backend"], a["outcome"]) for a in records[-1]["attempts"]] == [("uk", "failed"), ("uk-spare", "ok")]

    refusal = BackendRefusal(400, error_envelope("bad", "invalid_request_error", "invalid_request"))
    refusing = _backends(uk=refusal)
    outcome, _, _, records = _run(tmp_path / "b", refusing, "local", PERSONAL)
    assert outcome.status == 400 and refusing["uk-spare"].opened == []
    assert records[-1]["status"] == 400


def test_no_backend_left_is_a_503_in_the_openai_error_format(tmp_path: Path) -> None:
    down = _backends(uk=BackendFailure("connect"), spare=BackendFailure("http_503", retry_after=3))
    outcome, _, _, records = _run(tmp_path, down, "local", "hello")
    assert outcome.status == 503 and outcome.body is not None
    assert outcome.body["error"]["code"] == "no_cleared_backend_available" and outcome.headers["retry-after"] == "3"
    assert records[-1]["status"] == 503 and records[-1]["backend"] is None


def test_a_stream_is_relayed_whole_and_recorded_when_it_ends(tmp_path: Path) -> None:
    events = ['data: {"choices":[]}\n\n', "data: [DONE]\n\n"]
    outcome, state, relayed, records = _run(tmp_path, _backends(uk=events), "local", "hello", stream=True)
    assert outcome.status == 200 and outcome.headers["cache-control"] == "no-cache"
    assert relayed == events
    [record] = records
    assert record["status"] == 200 and record["completion_tokens"] == 2 and state.backend == "uk"


def test_an_unknown_model_is_a_404_recorded_without_its_name(tmp_path: Path) -> None:
    outcome, _, _, records = _run(tmp_path, _backends(), "no-such-model-NHS-9434765919", "hello")
    assert outcome.status == 404 and outcome.body is not None and outcome.body["error"]["param"] == "model"
    assert records[-1]["model"] == "_unknown"


@pytest.mark.parametrize("model", ["commercial-first", "local"])
def test_the_ceiling_of_a_caller_is_enforced_in_the_core(tmp_path: Path, model: str) -> None:
    async def main() -> Outcome:
        router, audit = _router(tmp_path, _backends())
        state = RequestState(Endpoint.CHAT)
        capped = Caller("capped", None, Level.OFFICIAL, None)
        body = {"model": model, "messages": [{"role": "user", "content": PERSONAL}]}
        try:
            async with asyncio.timeout(30) as deadline:
                outcome = await router.route(state, capped, body, deadline)
        except Exception as exc:
            outcome = router.failed(state, exc)
        await audit.aclose()
        return outcome

    outcome = asyncio.run(main())
    assert outcome.status == 403 and outcome.body is not None
    assert outcome.body["error"]["type"] == "permission_error"


def test_a_stream_closed_before_its_first_read_still_cancels_and_is_recorded(tmp_path: Path) -> None:
    """A client gone as the response starts: the relay never runs, yet the backend's stream is closed (its
    generation cancelled) and the request has its record."""
    backends = _backends(uk=['data: {"choices":[]}\n\n', "data: [DONE]\n\n"])

    async def main() -> Outcome:
        router, audit = _router(tmp_path, backends)
        outcome, _ = await _route(router, "local", "hello", stream=True)
        assert outcome.stream is not None
        await outcome.stream.aclose()
        await audit.aclose()
        return outcome

    asyncio.run(main())
    assert backends["uk"].stream.closed
    [record] = audit_records(tmp_path / "audit.jsonl")
    assert record["status"] == 499 and record["attempts"][-1]["reason"] == "client_disconnected"
