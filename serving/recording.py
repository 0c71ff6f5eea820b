"""Recording: what a request leaves behind (its audit record, metrics, log line and span), written in one place.

``RequestState`` collects what the record needs as a request moves through admission and the router; ``Recorder``
writes it. Never any content: only levels, signal types, names from the configuration, counts and codes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

from routing.audit import Attempt, AuditLog, AuditRecord, AuditWriteError, Signal
from routing.budgets import Ledger, Scope, Verdict
from routing.classify import Classification
from routing.levels import Level
from serving import genai_semconv as genai
from serving.backends.base import Endpoint, Usage
from serving.errors import Unavailable
from serving.metrics import Metrics

log = logging.getLogger("sovereign.gateway")


@dataclass
class RequestState:
    """What the audit record needs, accumulated as the request moves through the gateway. Never any content."""

    endpoint: Endpoint
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    caller: str | None = None
    team: str | None = None
    model: str | None = None
    body_bytes: int = 0
    budget_scopes: tuple[Scope, ...] = ()
    budget: Verdict | None = None  # the reservation made before dispatch (settled by Recorder.finish)
    declared: Level | None = None
    classification: Classification | None = None
    candidates: tuple[str, ...] = ()
    attempts: list[Attempt] = field(default_factory=list)
    backend: str | None = None
    status: int = 500
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    echo_request_id: bool = True
    egress_reviewed: bool = False  # the semantic second opinion has run (once per request)
    span: Span = trace.INVALID_SPAN  # the request's root span (started at admission, ended by Recorder.finish)
    started_loop: float = 0.0  # event-loop time at the start (deadlines are in the loop's clock)
    deadline: float = float("inf")  # event-loop time by which the request must have ended, streams included
    error_code: str | None = None  # the API error code of a failed request (recorded in its span)
    previous_response_id: str | None = None  # Responses API: the continued response's id, as the caller sent it
    operation: str | None = None  # what the audit record names when it is not the endpoint's POST (a retrieval)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.request_id} if self.echo_request_id else {}
        if self.classification is not None:
            headers["x-sovereign-classification"] = self.classification.level.label
        if self.backend is not None:
            headers["x-sovereign-backend"] = self.backend
        if self.budget is not None:
            headers.update(self.budget.headers)
        return headers


class Recorder:
    """Writes a request's audit records, metrics, log line and root span, and settles its budget reservation."""

    def __init__(
        self,
        audit: AuditLog,
        metrics: Metrics,
        ledger: Ledger,
        *,
        policy_sha256: str,
        classifier_sha256: str,
        known_teams: Collection[str],
        models: Collection[str],
    ) -> None:
        self.audit = audit
        self.metrics = metrics
        self.ledger = ledger
        self.policy_sha256 = policy_sha256
        self.classifier_sha256 = classifier_sha256
        self.known_teams = known_teams
        self.models = models

    async def egress(self, state: RequestState, backend: str) -> None:
        """Durable record before the first byte leaves the sovereign boundary; no record, no egress."""
        try:
            await self.audit.append(self.record(state, "egress", backend=backend), durable=True)
        except AuditWriteError:
            self.metrics.audit_failures.inc()
            raise Unavailable(
                "the audit log cannot be written; requests that leave the sovereign boundary are refused",
                code="audit_unavailable",
            ) from None

    async def finish(self, state: RequestState) -> None:
        """The request has ended (a stream: its last byte): settle its budget, then record it everywhere."""
        level = state.classification.level.label if state.classification else "_unclassified"
        used = (state.prompt_tokens or 0) + (state.completion_tokens or 0)
        if state.budget is not None:  # the estimate charged before dispatch becomes the counted usage
            try:
                await asyncio.shield(self.ledger.settle(state.budget_scopes, state.budget, used))
            except Exception:
                log.exception("budget settlement failed", extra={"request_id": state.request_id})
        model = state.model if state.model in self.models else None
        if used and state.backend is not None:
            team = state.team if state.team in self.known_teams else "other"
            for kind, count in (("prompt", state.prompt_tokens), ("completion", state.completion_tokens)):
                if count:
                    self.metrics.tokens.labels(team, model or "other", state.backend, level, kind).inc(count)
        self.metrics.requests.labels(model or "_other", level, state.backend or "_none", str(state.status)).inc()
        self.metrics.latency.labels(state.backend or "_none").observe(state.elapsed_ms() / 1000)
        try:
            await self.audit.append(self.record(state, "request", backend=state.backend), durable=False)
        except AuditWriteError:
            self.metrics.audit_failures.inc()
            log.error("audit write failed", extra={"request_id": state.request_id})
        log.info(
            "request",
            extra={
                "request_id": state.request_id,
                "caller": state.caller,
                "model": state.model,
                "classification": level,
                "backend": state.backend,
                "status": state.status,
                "latency_ms": round(state.elapsed_ms(), 2),
            },
        )
        self._end_span(state, level)

    def record(self, state: RequestState, event: Literal["egress", "request"], *, backend: str | None) -> AuditRecord:
        c = state.classification
        return AuditRecord(
            event=event,
            request_id=state.request_id,
            caller=state.caller,
            team=state.team,
            endpoint=state.operation or state.endpoint.path,
            model=state.model,
            declared_level=state.declared.label if state.declared else None,
            detected_level=c.detected_level.label if c else None,
            level=c.level.label if c else None,
            signals=tuple(Signal(type=s.type, count=s.count) for s in c.signals) if c else (),
            policy_sha256=self.policy_sha256,
            classifier_sha256=self.classifier_sha256,
            candidates=state.candidates,
            attempts=tuple(state.attempts),
            backend=backend,
            status=200 if event == "egress" else state.status,
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
            latency_ms=round(state.elapsed_ms(), 3),
        )

    @staticmethod
    def _end_span(state: RequestState, level: str) -> None:
        span = state.span
        span.set_attributes(
            {
                "sovereign.request_id": state.request_id,
                "sovereign.level": level,
                "sovereign.backend": state.backend or "",
                "sovereign.model": state.model or "",
                "http.response.status_code": state.status,
                "sovereign.prompt_tokens": state.prompt_tokens or 0,
                "sovereign.completion_tokens": state.completion_tokens or 0,
                **genai.request_attributes(
                    state.endpoint, state.model, Usage(state.prompt_tokens, state.completion_tokens)
                ),
            }
        )
        if state.error_code is not None:  # the code and type of a failure; never its message
            span.set_attribute("error.type", state.error_code)
        if state.status >= 500:
            span.set_status(StatusCode.ERROR)
        span.end()
