"""The router: authenticate, classify, decide, try candidates in order, audit. Transport-agnostic.

``Gateway.handle`` is the whole life of a routed request. The fallback loop lives here and only here, and
"has a byte gone to the client?" is decided by one thing: whether ``Backend.open`` has returned.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode

from routing.audit import Attempt, AuditLog, AuditRecord, AuditWriteError, Signal
from routing.budgets import InProcessLedger, Ledger, Limits, Scope, Verdict, estimate_tokens
from routing.classify import Classification, classifier_digest, classify_request
from routing.egress_review import UNAVAILABLE_SIGNAL, raise_level
from routing.keys import Caller, KeyStore, ReloadingKeyStore, bearer_token
from routing.levels import Level
from routing.policy import BackendPolicy, Refusal, decide, policy_digest
from routing.ratelimit import RateLimiter, SharedRateLimiter, retry_after_header
from serving import genai_semconv as genai
from serving import strict
from serving.backends.base import (
    RESPONSE_TERMINAL_EVENTS,
    Backend,
    BackendFailure,
    BackendRefusal,
    Endpoint,
    Opened,
    Usage,
)
from serving.config import Settings
from serving.egress_gate import EgressGate
from serving.errors import (
    APIError,
    BadRequest,
    GatewayTimeout,
    InternalError,
    NotFound,
    NotPermitted,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    error_sse,
)
from serving.http_edge import DONE_EVENT, EventStreamResponse, safe_request_id
from serving.metrics import Metrics
from serving.oidc import MAX_TOKEN_CHARS, OIDCVerifier, TokenNotMapped, TokenRefused, looks_like_jwt
from serving.response_ids import ResponseIds, new_key, rewrite_response, rewrite_response_events

log = logging.getLogger("sovereign.gateway")
tracer = trace.get_tracer("sovereign.gateway")

DECLARED_HEADER = "x-sovereign-classification"
StoredAction = Literal["retrieve", "delete", "cancel"]
T = TypeVar("T")


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
    budget: Verdict | None = None  # the reservation made before dispatch (settled in _finish)
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
    span: Span = trace.INVALID_SPAN  # the request's root span (set in handle)
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


class Gateway:
    def __init__(
        self,
        settings: Settings,
        backends: Mapping[str, Backend],
        *,
        audit: AuditLog,
        keys: KeyStore | ReloadingKeyStore,
        metrics: Metrics | None = None,
        limiter: RateLimiter | SharedRateLimiter | None = None,
        behind_serve_proxy: bool = False,
        ledger: Ledger | None = None,
        oidc: OIDCVerifier | None = None,
        response_ids: ResponseIds | None = None,
    ) -> None:
        self.settings = settings
        # The router replicas share its key (serving/app.py), so any of them resolves an id another issued.
        self.response_ids = response_ids or ResponseIds(new_key())
        self.backends = dict(backends)
        self.audit = audit
        self.keys = keys
        self.metrics = metrics or Metrics()
        self.limiter: RateLimiter | SharedRateLimiter = limiter or RateLimiter()
        auth = settings.auth
        self.oidc = oidc or (OIDCVerifier(auth.oidc) if auth.oidc is not None else None)
        self.ledger: Ledger = ledger or InProcessLedger()
        self.known_teams = auth.known_teams()
        self.routes: dict[str, list[str]] = {m.name: list(m.route) for m in settings.models}
        self.egress = EgressGate(settings)
        self.policy = {
            b.name: BackendPolicy(
                b.name, b.sovereign, b.max_classification, frozenset(getattr(b, "accept_unscanned", ()))
            )
            for b in settings.backends
        }
        self.policy_sha256 = policy_digest(
            {
                "backends": [
                    {
                        "name": b.name,
                        "sovereign": b.sovereign,
                        "max_classification": b.max_classification.label,
                        **(
                            {"accept_unscanned": sorted(p.accepts_unscanned)}
                            if (p := self.policy[b.name]).accepts_unscanned
                            else {}
                        ),
                    }
                    for b in settings.backends
                ],
                "models": [{"name": m.name, "route": m.route} for m in settings.models],
                **(
                    {
                        "egress_review": {
                            "artefact_sha256": self.egress.digest,
                            "threshold": self.egress.reviewer.threshold if self.egress.reviewer else None,
                        }
                    }
                    if self.egress.enabled
                    else {}
                ),
            }
        )
        self.classifier_sha256 = classifier_digest()
        # Compile the detector table and build the normalisation tables now, not inside the first request's
        # classification deadline (a cold first request on a busy host timed out and was refused as TOP SECRET).
        classify_request({"messages": [{"role": "user", "content": "warm-up"}]}, deadline_s=60)
        self.timeouts = {m.name: m.request_timeout_s for m in settings.models if m.request_timeout_s is not None}
        self.classification_deadline_s = settings.server.classification_deadline_ms / 1000
        self.in_flight = 0
        for name, backend in self.backends.items():
            if backend.queue_depth is not None:  # local backends: the depth that decides overflow, read at scrape
                self.metrics.queue_depth.labels(name).set_function(functools.partial(_queue_depth, backend))
        # Ray Serve's proxy assigns `x-request-id` (or keeps the caller's) and adds it to every response itself.
        self.behind_serve_proxy = behind_serve_proxy

    # -- the routed endpoints -------------------------------------------------------------------------------

    async def handle(self, endpoint: Endpoint, request: Request) -> Response:
        state = RequestState(endpoint, echo_request_id=not self.behind_serve_proxy)
        # The parent is Ray Serve's replica span when Serve's tracing is on (itself a child of the caller's
        # `traceparent`), else the caller's context itself. The span ends with the request (streams: in _relay).
        state.span = tracer.start_span(
            "sovereign.request",
            context=_parent_context(request),
            kind=SpanKind.SERVER,
            attributes={"sovereign.endpoint": endpoint.path},
        )
        state.started_loop = asyncio.get_running_loop().time()
        state.deadline = state.started_loop + self.settings.server.request_timeout_s
        self.in_flight += 1
        streaming = False
        deadline = asyncio.timeout_at(state.deadline)  # until the response starts; a stream's relay keeps it after
        try:
            state.request_id = _request_id(request, state.request_id)
            # No exception message or stack goes into a span (messages can quote the body): _finish records the
            # error's code and type only.
            with trace.use_span(state.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                async with deadline:
                    response = await self._route(state, request, deadline)
            streaming = isinstance(response, StreamingResponse)
            return response
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            return self._failed(state, exc)
        except Exception as exc:
            return self._failed(state, exc)
        finally:
            self.in_flight -= 1
            if not streaming:  # a stream writes its record when it ends
                await self._finish(state)

    async def _route(self, state: RequestState, request: Request, deadline: asyncio.Timeout) -> Response:
        caller = await self._authenticate(request)
        state.caller, state.team = caller.name, caller.team
        if self.in_flight > self.settings.server.max_concurrency:
            raise Unavailable(
                "the server is at its concurrency limit; retry later", code="server_busy", headers={"retry-after": "1"}
            )
        body = await self._read_json(request, state)
        state.declared = _declared_level(request)
        # Only configured names are recorded: a caller-chosen model string could itself carry content.
        model_name = body.get("model")
        state.model = model_name if isinstance(model_name, str) and model_name in self.routes else "_unknown"
        model_timeout = self.timeouts.get(state.model)
        if model_timeout is not None and state.started_loop + model_timeout < state.deadline:
            state.deadline = state.started_loop + model_timeout
            deadline.reschedule(state.deadline)

        started = time.perf_counter()
        with tracer.start_as_current_span("sovereign.classify", **_NO_EXCEPTION_TEXT) as span:
            classification = classify_request(
                body, declared=state.declared, floor=caller.floor, deadline_s=self.classification_deadline_s
            )
            span.set_attributes(
                {
                    "sovereign.level": classification.level.label,
                    "sovereign.detected_level": classification.detected_level.label,
                    "sovereign.signal_types": [s.type for s in classification.signals],
                    "sovereign.local_only": classification.local_only,
                }
            )
        self.metrics.classification.observe(time.perf_counter() - started)
        self.metrics.on_classification(s.type for s in classification.signals)
        state.classification = classification

        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("invalid request: model: a model name is required", param="model")
        route = self.routes.get(model)
        if route is None or not caller.may_use(model):
            raise NotFound("the model does not exist or you do not have access to it", param="model")
        route = [name for name in route if self.backends[name].serves(state.endpoint)]
        if not route:
            raise NotFound(f"the model does not support {state.endpoint.path}", param="model")
        if state.endpoint is Endpoint.RESPONSES:
            body, route = self._continuation(state, body, route)
        parsed = self._validate(state.endpoint, body, route)

        level = classification.level
        overloaded = [n for n in route if self.backends[n].overloaded]
        unavailable = [n for n in route if not self.backends[n].available]
        with tracer.start_as_current_span("sovereign.policy", **_NO_EXCEPTION_TEXT) as span:
            plan = decide(
                level,
                [self.policy[n] for n in route],
                ceiling=caller.ceiling,
                overloaded=overloaded,
                unavailable=unavailable,
                unscanned=classification.unscanned,
                readable=classification.readable_level,
            )
            span.set_attributes(
                {
                    "sovereign.candidates": list(plan.candidates),
                    "sovereign.overflowed": list(plan.overflowed),
                    "sovereign.refusal": plan.refusal.value if plan.refusal else "",
                }
            )
        state.candidates = plan.candidates
        for name in plan.overflowed:
            self.metrics.overflows.labels(model, name).inc()
        if plan.refusal is Refusal.CEILING:
            raise NotPermitted(f"your key is not permitted to send {level.label} requests")
        if plan.refusal is Refusal.NOT_CLEARED:
            raise NotPermitted(f"no backend for this model is cleared for {level.label}")
        await self._reserve_budget(state, caller)
        return await self._dispatch(state, body, plan.candidates, parsed)

    def _continuation(
        self, state: RequestState, body: dict[str, Any], route: list[str]
    ) -> tuple[dict[str, Any], list[str]]:
        """A Responses API request that continues an earlier response goes to the backend holding it, and only
        there (no fallback: the earlier turns are nowhere else, and a conversation held locally must never go on
        at a commercial backend). Returns the body with the holder's own id, and the one-backend route."""
        if body.get("conversation") is not None:
            raise BadRequest(
                "invalid request: conversation: conversations are not offered here; continue a response by its "
                "previous_response_id",
                param="conversation",
                code="unsupported_parameter",
            )
        previous = body.get("previous_response_id")
        if previous is None:
            return body, route
        found = self.response_ids.resolve(previous, state.caller or "")
        if found is None or found[0] not in self.backends:
            raise NotFound(
                "no response with this previous_response_id", param="previous_response_id", code="response_not_found"
            )
        holder, upstream_id = found
        if holder not in route:
            raise BadRequest(
                "invalid request: previous_response_id: the response was made by a backend this model does not "
                "route to; continue it with the model that made it",
                param="previous_response_id",
            )
        state.previous_response_id = previous
        return {**body, "previous_response_id": upstream_id}, [holder]

    def _issue_ids(self, state: RequestState, backend: str, opened: Opened) -> Opened:
        """A Responses API answer with the router's ids in place of the backend's (serving/response_ids.py)."""
        owner = state.caller or ""

        def fix(response: dict[str, Any]) -> None:
            rewrite_response(
                response, lambda upstream: self.response_ids.issue(backend, upstream, owner), state.previous_response_id
            )

        if opened.body is not None:
            fix(opened.body)
            return opened
        assert opened.chunks is not None
        return Opened(
            chunks=rewrite_response_events(opened.chunks, fix), usage=opened.usage, finish_reasons=opened.finish_reasons
        )

    def budget_scopes(self, caller: Caller) -> tuple[Scope, ...]:
        """The budgets a caller's requests count against: its own and its team's (those configured)."""
        budgets = self.settings.auth.budgets
        scopes = []
        for key, limits in (
            (f"caller:{caller.name}", budgets.callers.get(caller.name, budgets.default_caller)),
            (f"team:{caller.team}", budgets.teams.get(caller.team, budgets.default_team)),
        ):
            if limits is not None:
                scope = Scope(key, Limits(limits.requests_per_minute, limits.tokens_per_minute, limits.tokens_per_day))
                if scope.limits:
                    scopes.append(scope)
        return tuple(scopes)

    async def _reserve_budget(self, state: RequestState, caller: Caller) -> None:
        """Charge the request and its prompt's estimate to its budgets, or refuse it (429) before any backend."""
        scopes = self.budget_scopes(caller)
        if not scopes:
            return
        try:
            verdict = await self.ledger.reserve(scopes, estimate_tokens(state.body_bytes))
        except Exception:  # the shared ledger is unreachable: fail closed
            log.exception("budget ledger unavailable", extra={"request_id": state.request_id})
            raise Unavailable(
                "budgets cannot be checked now; retry later",
                code="budget_ledger_unavailable",
                headers={"retry-after": "1"},
            ) from None
        if not verdict.allowed:
            what = (verdict.exceeded or "").split(" of ")[0].replace("_", " ")
            whose = "team's" if (verdict.exceeded or "").endswith(f"team:{caller.team}") else "own"
            raise RateLimited(
                f"budget exceeded: your {whose} {what} budget is used up; retry after the reset",
                headers={**verdict.headers, "retry-after": retry_after_header(verdict.retry_after_s or 1)},
            )
        state.budget_scopes, state.budget = scopes, verdict

    async def _dispatch(
        self, state: RequestState, body: dict[str, Any], candidates: tuple[str, ...], parsed: Mapping[str, Any]
    ) -> Response:
        """Try ``candidates`` in order; ``parsed``: each backend's ``validate`` result for ``body``."""
        assert state.classification is not None
        retry_after: float | None = None
        for name in candidates:
            backend = self.backends[name]
            level = state.classification.level_for(self.policy[name].accepts_unscanned)
            if not backend.sovereign:
                if await self._egress_review(state, body, level):
                    continue  # the second opinion keeps it local (or could not answer): no non-sovereign backend
                if level > Level.OFFICIAL:  # unreachable through decide(); kept so no refactor can make it so
                    raise NotPermitted("non-sovereign backends may only receive OFFICIAL requests")
                await self._audit_egress(state, name)
                self.metrics.egress.labels(level.label, name).inc()
            started = time.perf_counter()
            try:
                with tracer.start_as_current_span(
                    "sovereign.backend_attempt",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "sovereign.backend": name,
                        "sovereign.backend_sovereign": backend.sovereign,
                        **genai.attempt_attributes(self.settings, name, state.endpoint),
                    },
                    **_NO_EXCEPTION_TEXT,
                ) as span:
                    try:
                        opened = await backend.open(
                            state.endpoint,
                            body,
                            request_id=state.request_id,
                            trace_headers=_trace_headers() if backend.sovereign else {},
                            parsed=parsed.get(name),
                        )
                    except (BackendFailure, BackendRefusal) as exc:
                        span.set_attribute("sovereign.outcome", exc.__class__.__name__)
                        span.set_attribute(
                            "sovereign.reason", exc.reason if isinstance(exc, BackendFailure) else f"http_{exc.status}"
                        )
                        raise
                    except asyncio.CancelledError:  # the request's deadline, or the client left
                        span.set_attribute("sovereign.outcome", "cancelled")
                        raise
                    span.set_attribute("sovereign.outcome", "ok")
                    span.set_attributes(genai.response_attributes(opened))
                    opened = genai.observed(opened)
            except BackendFailure as failure:
                state.attempts.append(Attempt(backend=name, outcome="failed", reason=failure.reason, ms=_ms(started)))
                self.metrics.fallbacks.labels(state.model or "_", name, failure.reason).inc()
                retry_after = failure.retry_after or retry_after
                continue
            except asyncio.CancelledError:  # handle() answers a timeout (504); a client that left gets nothing
                timed_out = asyncio.get_running_loop().time() >= state.deadline
                state.attempts.append(
                    Attempt(
                        backend=name,
                        outcome="timeout" if timed_out else "cancelled",
                        reason="request_timeout" if timed_out else "client_disconnected",
                        ms=_ms(started),
                    )
                )
                if not timed_out:
                    state.status = 499
                raise
            except BackendRefusal as refusal:
                state.attempts.append(
                    Attempt(backend=name, outcome="refused", reason=f"http_{refusal.status}", ms=_ms(started))
                )
                state.backend = name
                state.status = refusal.status
                return JSONResponse(refusal.envelope, status_code=refusal.status, headers=state.headers())
            state.backend = name
            self.metrics.ttft.labels(name).observe(time.perf_counter() - started)
            if state.endpoint is Endpoint.RESPONSES:
                opened = self._issue_ids(state, name, opened)
            if opened.body is not None:
                state.attempts.append(Attempt(backend=name, outcome="ok", ms=_ms(started)))
                state.status = 200
                state.prompt_tokens = opened.usage.prompt_tokens
                state.completion_tokens = opened.usage.completion_tokens
                return JSONResponse(opened.body, headers=state.headers())
            return EventStreamResponse(
                self._relay(state, opened, started),
                media_type="text/event-stream",
                headers={**state.headers(), "cache-control": "no-cache"},
            )
        headers = {"retry-after": retry_after_header(retry_after)} if retry_after else None
        raise Unavailable("no backend cleared for this request can serve it now; retry later", headers=headers)

    async def _relay(self, state: RequestState, opened: Opened, started: float) -> AsyncIterator[str]:
        """Pass a started stream through; a failure now ends it with an error event, never a clean finish, and so
        does the request's deadline (the backend's generation is then cancelled)."""
        assert opened.chunks is not None
        name = state.backend or "_"
        outcome, reason, chunks, first_at = "ok", None, 0, time.perf_counter()
        span = tracer.start_span(
            "sovereign.stream",
            context=trace.set_span_in_context(state.span),
            attributes={"sovereign.backend": name, "sovereign.ttft_ms": round((first_at - started) * 1000, 3)},
        )
        deadline = StreamDeadline(state.deadline)
        try:
            done = False  # the last chunk ended with [DONE]: the answer is whole, whatever the clock says now
            while True:
                try:
                    chunk = await deadline.wait(anext(opened.chunks), expired_ok=done)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    outcome, reason, state.status = "timeout", "request_timeout", 504
                    state.error_code = GatewayTimeout.code
                    yield error_sse(GatewayTimeout())
                    break
                chunks += 1
                done = chunk.endswith(_DONE) or _ends_response_stream(chunk)
                yield chunk
            if outcome == "ok":
                state.status = 200
        except BackendFailure as failure:
            outcome, reason, state.status = "failed_mid_stream", failure.reason, 502
            state.error_code = "stream_interrupted"
            yield error_sse(
                Unavailable("the backend failed while streaming; the response is incomplete", code="stream_interrupted")
            )
        except (asyncio.CancelledError, GeneratorExit):
            outcome, reason, state.status = "cancelled", "client_disconnected", 499
            raise
        except Exception as exc:
            log.exception("stream relay failed", extra={"request_id": state.request_id})
            outcome, reason, state.status = "failed_mid_stream", "internal", 500
            state.error_code = type(exc).__name__
            yield error_sse(InternalError())
        finally:
            deadline.cancel()
            await opened.chunks.aclose()
            state.attempts.append(Attempt(backend=name, outcome=outcome, reason=reason, ms=_ms(started)))
            state.prompt_tokens = opened.usage.prompt_tokens
            state.completion_tokens = opened.usage.completion_tokens
            if chunks > 1 and opened.usage.completion_tokens:
                self.metrics.itl.labels(name).observe(
                    (time.perf_counter() - first_at) / max(1, opened.usage.completion_tokens - 1)
                )
            span.set_attributes(
                {
                    "sovereign.outcome": outcome,
                    "sovereign.chunks": chunks,
                    "sovereign.completion_tokens": opened.usage.completion_tokens or 0,
                    **genai.response_attributes(opened),
                }
            )
            if outcome != "ok":
                span.set_status(StatusCode.ERROR, reason or outcome)
            span.end()
            await self._finish(state)

    async def handle_stored(self, action: StoredAction, response_id: str, request: Request) -> Response:
        """``GET``/``DELETE /v1/responses/{id}`` and ``POST /v1/responses/{id}/cancel``: at the backend holding the
        response, for the caller it was issued to (anyone else's id, or a forged one, is a 404), audited."""
        state = RequestState(Endpoint.RESPONSES, echo_request_id=not self.behind_serve_proxy)
        state.operation = f"/v1/responses:{action}"
        state.span = tracer.start_span(
            "sovereign.request",
            context=_parent_context(request),
            kind=SpanKind.SERVER,
            attributes={"sovereign.endpoint": state.operation},
        )
        try:
            state.request_id = _request_id(request, state.request_id)
            with trace.use_span(state.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                async with asyncio.timeout(self.settings.server.request_timeout_s):
                    return await self._stored(state, action, response_id, request)
        except Exception as exc:
            return self._failed(state, exc)
        finally:
            await self._finish(state)

    @staticmethod
    def _failed(state: RequestState, exc: Exception) -> Response:
        """The answer to a request that failed before its response started (called in the ``except`` block): an
        API error as itself, the request's deadline as a 504, anything else as a 500 (logged by type only)."""
        if isinstance(exc, APIError):
            err: APIError = exc
        elif isinstance(exc, TimeoutError):
            err = GatewayTimeout()
        else:
            log.exception("unexpected failure", extra={"request_id": state.request_id})
            state.status, state.error_code = 500, type(exc).__name__
            return InternalError().response(state.headers())
        state.status, state.error_code = err.status, err.code
        return err.response(state.headers())

    async def _stored(self, state: RequestState, action: StoredAction, response_id: str, request: Request) -> Response:
        caller = await self._authenticate(request)
        state.caller, state.team = caller.name, caller.team
        found = self.response_ids.resolve(response_id, caller.name)
        if found is None or found[0] not in self.backends:
            raise NotFound("no response with this id", param="response_id", code="response_not_found")
        name, upstream_id = found
        state.candidates = (name,)
        started = time.perf_counter()
        try:
            opened = await self.backends[name].stored(action, upstream_id, request_id=state.request_id)
        except BackendRefusal as refusal:
            state.attempts.append(
                Attempt(backend=name, outcome="refused", reason=f"http_{refusal.status}", ms=_ms(started))
            )
            state.backend, state.status = name, refusal.status
            return JSONResponse(refusal.envelope, status_code=refusal.status, headers=state.headers())
        except BackendFailure as failure:
            state.attempts.append(Attempt(backend=name, outcome="failed", reason=failure.reason, ms=_ms(started)))
            raise Unavailable("the backend holding this response cannot answer now; retry later") from None
        state.attempts.append(Attempt(backend=name, outcome="ok", ms=_ms(started)))
        state.backend, state.status = name, 200
        body = opened.body if opened.body is not None else {}
        rewrite_response(body, lambda _: response_id, None)
        if body.get("previous_response_id") is not None:  # the earlier turn's id, as this caller would know it
            body["previous_response_id"] = self.response_ids.issue(name, body["previous_response_id"], caller.name)
        return JSONResponse(body, headers=state.headers())

    # -- steps ----------------------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Caller:
        """The caller of a request outside the routed endpoints (raises ``Unauthorized`` or ``RateLimited``)."""
        return await self._authenticate(request)

    async def _authenticate(self, request: Request) -> Caller:
        header = request.headers.get("authorization")
        token = bearer_token(header, max_chars=MAX_TOKEN_CHARS) if self.oidc is not None else None
        if token is not None and looks_like_jwt(token):
            caller = await self._verify_token(token)
        else:
            found = self.keys.authenticate(header)
            if found is None:
                raise Unauthorized("missing or unknown API key; send `Authorization: Bearer <key>`")
            if found.expired():
                raise Unauthorized("the API key has expired", code="expired_api_key")
            caller = found
        rate = caller.rate_per_minute or self.settings.auth.default_rate_per_minute
        wait = await self.limiter.acheck(caller.name, rate)  # shared by the router replicas when there are several
        if wait is not None:
            raise RateLimited(
                f"rate limit of {rate} requests per minute exceeded", headers={"retry-after": retry_after_header(wait)}
            )
        return caller

    async def _verify_token(self, token: str) -> Caller:
        assert self.oidc is not None
        try:
            if self.oidc.uses_network:  # a JWKS fetch blocks: keep it off the event loop
                return await asyncio.to_thread(self.oidc.verify, token)
            return self.oidc.verify(token)
        except TokenRefused as exc:
            raise Unauthorized(f"invalid bearer token: {exc.reason}", code="invalid_token") from None
        except TokenNotMapped:
            raise NotPermitted(
                "your identity is not permitted to use this service (no rule maps its groups or roles)",
                code="identity_not_permitted",
            ) from None

    async def _read_json(self, request: Request, state: RequestState | None = None) -> dict[str, Any]:
        limit = self.settings.server.max_body_bytes
        declared_length = request.headers.get("content-length")
        if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        if state is not None:
            state.body_bytes = size
        try:
            body = strict.loads(b"".join(chunks))  # no NaN/Infinity: they hung the engine
        except strict.NotUTF8:
            raise BadRequest(
                "invalid request: the body must be JSON encoded as UTF-8 (UTF-16 and UTF-32 are not accepted)",
                code="invalid_encoding",
            ) from None
        except (ValueError, RecursionError):
            raise BadRequest("invalid request: the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("invalid request: the body must be a JSON object")
        return body

    def _validate(self, endpoint: Endpoint, body: dict[str, Any], route: list[str]) -> dict[str, Any]:
        """Reject a malformed body before any backend sees it: every backend the request may go to checks it
        (vLLM's own request models for a local one). Returns what each one parsed, for its ``open``."""
        strict.check_json_types(body)
        from pydantic import ValidationError

        from serving.backends.local import validation_message

        parsed: dict[str, Any] = {}
        try:
            for name in route:
                parsed[name] = self.backends[name].validate(endpoint, body)
        except APIError:
            raise
        except ValidationError as exc:
            message, param = validation_message(exc, body)
            raise BadRequest(message, param=param) from None
        except Exception as exc:  # any validator failure on the caller's body is the body's fault: a 400
            log.warning("request validator failed", exc_info=exc)  # the exception's type only (JSONFormatter)
            raise BadRequest("invalid request: the body does not match the API schema") from None
        return parsed

    async def _egress_review(self, state: RequestState, body: dict[str, Any], level: Level) -> bool:
        """Before the first non-sovereign attempt: the semantic second opinion. True means keep the request local.

        Runs once per request, only when the request is about to leave (local-only routes never pay for it). A flag,
        or no answer in time, raises the level to OFFICIAL-SENSITIVE with its ``semantic_*`` signals (audited).
        ``level``: the request's level for this backend (its readable content's, where it accepts every unscanned
        kind the request holds)."""
        assert state.classification is not None
        if level > Level.OFFICIAL:
            return True
        if not self.egress.enabled or state.egress_reviewed:
            return False
        state.egress_reviewed = True
        started = time.perf_counter()
        with tracer.start_as_current_span("sovereign.egress_review") as span:
            signals = await self.egress.check(body)
            span.set_attribute("sovereign.egress_review", list(signals) if signals else ["pass"])
        self.metrics.egress_review_time.observe(time.perf_counter() - started)
        outcome = "passed" if signals is None else "unavailable" if UNAVAILABLE_SIGNAL in signals else "flagged"
        self.metrics.egress_reviews.labels(outcome).inc()
        if signals is None:
            return False
        state.classification = raise_level(state.classification, signals)
        return True

    async def _audit_egress(self, state: RequestState, backend: str) -> None:
        """Durable record before the first byte leaves the sovereign boundary; no record, no egress."""
        try:
            await self.audit.append(self._record(state, "egress", backend=backend), durable=True)
        except AuditWriteError:
            self.metrics.audit_failures.inc()
            raise Unavailable(
                "the audit log cannot be written; requests that leave the sovereign boundary are refused",
                code="audit_unavailable",
            ) from None

    async def _finish(self, state: RequestState) -> None:
        level = state.classification.level.label if state.classification else "_unclassified"
        used = (state.prompt_tokens or 0) + (state.completion_tokens or 0)
        if state.budget is not None:  # the estimate charged before dispatch becomes the counted usage
            try:
                await asyncio.shield(self.ledger.settle(state.budget_scopes, state.budget, used))
            except Exception:
                log.exception("budget settlement failed", extra={"request_id": state.request_id})
        if used and state.backend is not None:
            team = state.team if state.team in self.known_teams else "other"
            model = state.model if state.model in self.routes else "other"
            for kind, count in (("prompt", state.prompt_tokens), ("completion", state.completion_tokens)):
                if count:
                    self.metrics.tokens.labels(team, model, state.backend, level, kind).inc(count)
        self.metrics.requests.labels(
            state.model if state.model in self.routes else "_other", level, state.backend or "_none", str(state.status)
        ).inc()
        self.metrics.latency.labels(state.backend or "_none").observe(state.elapsed_ms() / 1000)
        try:
            await self.audit.append(self._record(state, "request", backend=state.backend), durable=False)
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

    def _record(self, state: RequestState, event: Literal["egress", "request"], *, backend: str | None) -> AuditRecord:
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

    async def close(self) -> None:
        """Drain the audit writer and close backend clients (called when the replica stops)."""
        await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)
        self.egress.close()
        await self.audit.aclose()

    # -- the rest of the API ----------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> dict[str, Any]:
        """OpenAI's model list, each model with an extra ``endpoints``: the paths it serves (the SDK keeps extra
        fields: ``model.model_extra["endpoints"]``)."""
        caller = await self._authenticate(request)
        return {
            "object": "list",
            "data": [
                {
                    "id": m.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "sovereign",
                    "endpoints": self.model_endpoints(m.name),
                }
                for m in self.settings.models
                if caller.may_use(m.name)
            ],
        }

    def model_endpoints(self, model: str) -> list[str]:
        """The API paths a model serves: those that some backend of its route serves (clearance aside)."""
        return [e.path for e in Endpoint if any(self.backends[name].serves(e) for name in self.routes[model])]

    async def readiness(self) -> tuple[bool, dict[str, bool]]:
        names = list(self.backends)
        results = await asyncio.gather(*(self.backends[n].ready() for n in names), return_exceptions=True)
        status = {n: r is True for n, r in zip(names, results, strict=True)}
        ready = any(any(status[b] for b in route) for route in self.routes.values())
        return ready, status


def _declared_level(request: Request) -> Level | None:
    values = request.headers.getlist(DECLARED_HEADER)
    if not values:
        return None
    try:  # repeated headers: the highest wins, so a second, lower one can never lower the level
        return max(Level.parse(value) for value in values)
    except ValueError:
        raise BadRequest(
            "invalid X-Sovereign-Classification header: not a classification level",
            param=DECLARED_HEADER,
            code="invalid_classification",
        ) from None


class _SpanErrorOptions(TypedDict):
    record_exception: bool
    set_status_on_exception: bool


_NO_EXCEPTION_TEXT: _SpanErrorOptions = {"record_exception": False, "set_status_on_exception": False}
_DONE = DONE_EVENT.decode()
_RESPONSE_STREAM_ENDS = tuple(f"event: {name}\n" for name in RESPONSE_TERMINAL_EVENTS)


def _ends_response_stream(chunk: str) -> bool:
    """Whether a chunk holds a Responses API stream's last event (that stream has no ``[DONE]``)."""
    return "event: response." in chunk and any(end in chunk for end in _RESPONSE_STREAM_ENDS)


class StreamDeadline:
    """One timer for a whole stream that interrupts only a wait for the backend's next chunk, never a write to the
    client (cancelling a write would end the response without its error event, and look like a client that left).

    ``asyncio.timeout`` around each wait would do the same with a timer per chunk (about 9 us each here); this arms
    one for the stream. Made in the task that relays the stream.
    """

    def __init__(self, when: float) -> None:
        self.expired = False
        self._waiting = False
        self._task = asyncio.current_task()
        self._handle = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self.expired = True
        if self._waiting and self._task is not None:
            self._task.cancel()

    async def wait(self, awaitable: Awaitable[T], *, expired_ok: bool = False) -> T:
        """``await awaitable``, or raise ``TimeoutError`` if the deadline has passed or passes meanwhile (with
        ``expired_ok``, a deadline passed already is ignored: only the end of the stream is awaited)."""
        if self.expired and not expired_ok:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise TimeoutError
        assert self._task is not None
        cancelling = self._task.cancelling()
        self._waiting = True
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self.expired and self._task.uncancel() <= cancelling:  # our cancellation, not the client's
                raise TimeoutError from None
            raise
        finally:
            self._waiting = False

    def cancel(self) -> None:
        self._handle.cancel()


def _parent_context(request: Request) -> Context:
    if trace.get_current_span().get_span_context().is_valid:
        return context.get_current()
    return propagate.extract(request.headers)


def _trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, for sovereign backends only (vLLM joins the same trace)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _request_id(request: Request, generated: str) -> str:
    """The caller's (or the proxy's) ``x-request-id`` if it is a UUID or a hex token, else ``generated``.

    The id is echoed, logged, put in spans and written into the audit chain, where it can never be redacted: any
    other value (an e-mail address, an NHS number) is replaced, not kept. Behind Ray Serve the edge has done the
    same already (``http_edge.RequestIdGuard``), so the id here is the one the proxy echoes.
    """
    return safe_request_id(request.headers.get("x-request-id")) or generated


def _queue_depth(backend: Backend) -> int:
    return backend.queue_depth or 0


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
