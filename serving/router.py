"""The router core: classify, decide, try candidates in order. Free of any transport.

``Router.route`` takes an admitted request (its caller and parsed JSON body) and returns an ``Outcome``: a JSON
body or a started stream, with status and headers. The HTTP edge (serving/gateway.py) admits requests and turns
outcomes into responses; serving/recording.py writes what each request leaves behind. The fallback loop lives
here and only here, and "has a byte gone to the client?" is decided by one thing: whether ``Backend.open`` has
returned.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, TypeVar

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from routing.audit import Attempt
from routing.budgets import Ledger, Limits, Scope, estimate_tokens
from routing.classify import classify_request
from routing.classify import warm as warm_classifier
from routing.egress_review import UNAVAILABLE_SIGNAL, raise_level
from routing.keys import Caller
from routing.levels import Level
from routing.policy import BackendPolicy, Refusal, decide, policy_digest
from routing.ratelimit import retry_after_header
from serving import genai_semconv as genai
from serving import strict
from serving.backends.base import (
    RESPONSE_TERMINAL_EVENTS,
    Backend,
    BackendFailure,
    BackendRefusal,
    Chunks,
    Endpoint,
    GuardedStream,
    Opened,
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
    RateLimited,
    Unavailable,
    error_sse,
)
from serving.http_edge import DONE_EVENT
from serving.metrics import Metrics
from serving.recording import Recorder, RequestState
from serving.response_ids import ResponseIds, rewrite_response, rewrite_response_events

log = logging.getLogger("sovereign.gateway")
tracer = trace.get_tracer("sovereign.gateway")

StoredAction = Literal["retrieve", "delete", "cancel"]
T = TypeVar("T")


@dataclass
class Outcome:
    """The router's answer, in no transport's terms: a JSON ``body`` or a started ``stream`` of SSE events, with
    its status and headers. The HTTP edge turns it into a response."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    stream: Chunks | None = None  # a GuardedStream over Router._relay (Router._abandon when closed unread)

    @classmethod
    def error(cls, err: APIError, headers: Mapping[str, str]) -> Outcome:
        return cls(err.status, {**err.headers, **headers}, body=err.envelope())


def backend_policies(settings: Settings) -> dict[str, BackendPolicy]:
    """What the policy knows of each backend."""
    return {
        b.name: BackendPolicy(b.name, b.sovereign, b.max_classification, frozenset(getattr(b, "accept_unscanned", ())))
        for b in settings.backends
    }


def routing_policy_digest(settings: Settings, policies: Mapping[str, BackendPolicy], egress: EgressGate) -> str:
    """The digest every audit record names: backends' clearances, routes, and the egress review's artefact."""
    return policy_digest(
        {
            "backends": [
                {
                    "name": b.name,
                    "sovereign": b.sovereign,
                    "max_classification": b.max_classification.label,
                    **(
                        {"accept_unscanned": sorted(p.accepts_unscanned)}
                        if (p := policies[b.name]).accepts_unscanned
                        else {}
                    ),
                }
                for b in settings.backends
            ],
            "models": [{"name": m.name, "route": m.route} for m in settings.models],
            **(
                {
                    "egress_review": {
                        "artefact_sha256": egress.digest,
                        "threshold": egress.reviewer.threshold if egress.reviewer else None,
                    }
                }
                if egress.enabled
                else {}
            ),
        }
    )


class Router:
    """Routes admitted requests: classification, policy, the egress review, budgets, the fallback loop."""

    def __init__(
        self,
        settings: Settings,
        backends: Mapping[str, Backend],
        recorder: Recorder,
        *,
        policies: Mapping[str, BackendPolicy],
        egress: EgressGate,
        ledger: Ledger,
        response_ids: ResponseIds,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.backends = dict(backends)
        self.recorder = recorder
        self.policy = dict(policies)
        self.egress = egress
        self.ledger = ledger
        self.response_ids = response_ids
        self.metrics = metrics
        self.routes: dict[str, list[str]] = {m.name: list(m.route) for m in settings.models}
        self.timeouts = {m.name: m.request_timeout_s for m in settings.models if m.request_timeout_s is not None}
        self.classification_deadline_s = settings.server.classification_deadline_ms / 1000
        # Compile the detector table and build the normalisation tables now, not inside the first request's
        # classification deadline (a cold first request on a busy host timed out and was refused as TOP SECRET).
        warm_classifier()

    async def route(
        self, state: RequestState, caller: Caller, body: dict[str, Any], deadline: asyncio.Timeout
    ) -> Outcome:
        """Classify ``body``, decide where it may go, and try those backends in order. ``deadline`` is the
        request's, rescheduled here if its model has a shorter one."""
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
    ) -> Outcome:
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
                await self.recorder.egress(state, name)
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
                return Outcome(refusal.status, state.headers(), body=refusal.envelope)
            state.backend = name
            self.metrics.ttft.labels(name).observe(time.perf_counter() - started)
            if state.endpoint is Endpoint.RESPONSES:
                opened = self._issue_ids(state, name, opened)
            if opened.body is not None:
                state.attempts.append(Attempt(backend=name, outcome="ok", ms=_ms(started)))
                state.status = 200
                state.prompt_tokens = opened.usage.prompt_tokens
                state.completion_tokens = opened.usage.completion_tokens
                return Outcome(200, state.headers(), body=opened.body)
            relay = GuardedStream(
                self._relay(state, opened, started), functools.partial(self._abandon, state, opened, started)
            )
            return Outcome(200, {**state.headers(), "cache-control": "no-cache"}, stream=relay)
        headers = {"retry-after": retry_after_header(retry_after)} if retry_after else None
        raise Unavailable("no backend cleared for this request can serve it now; retry later", headers=headers)

    async def _abandon(self, state: RequestState, opened: Opened, started: float) -> None:
        """A started stream whose relay never began (the client left as the response started): the backend's
        generation is cancelled and the request recorded as cancelled."""
        assert opened.chunks is not None
        try:
            await opened.chunks.aclose()
        finally:
            state.attempts.append(
                Attempt(
                    backend=state.backend or "_", outcome="cancelled", reason="client_disconnected", ms=_ms(started)
                )
            )
            state.status = 499
            await self.recorder.finish(state)

    async def _relay(self, state: RequestState, opened: Opened, started: float) -> AsyncGenerator[str, None]:
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
            await self.recorder.finish(state)

    async def stored(self, state: RequestState, caller: Caller, action: StoredAction, response_id: str) -> Outcome:
        """A Responses API response at the backend holding it, for the caller it was issued to (anyone else's id,
        or a forged one, is a 404)."""
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
            return Outcome(refusal.status, state.headers(), body=refusal.envelope)
        except BackendFailure as failure:
            state.attempts.append(Attempt(backend=name, outcome="failed", reason=failure.reason, ms=_ms(started)))
            raise Unavailable("the backend holding this response cannot answer now; retry later") from None
        state.attempts.append(Attempt(backend=name, outcome="ok", ms=_ms(started)))
        state.backend, state.status = name, 200
        body = opened.body if opened.body is not None else {}
        rewrite_response(body, lambda _: response_id, None)
        if body.get("previous_response_id") is not None:  # the earlier turn's id, as this caller would know it
            body["previous_response_id"] = self.response_ids.issue(name, body["previous_response_id"], caller.name)
        return Outcome(200, state.headers(), body=body)

    @staticmethod
    def failed(state: RequestState, exc: Exception) -> Outcome:
        """The answer to a request that failed before its response started (called in the ``except`` block): an
        API error as itself, the request's deadline as a 504, anything else as a 500 (logged by type only)."""
        if isinstance(exc, APIError):
            err: APIError = exc
        elif isinstance(exc, TimeoutError):
            err = GatewayTimeout()
        else:
            log.exception("unexpected failure", extra={"request_id": state.request_id})
            state.status, state.error_code = 500, type(exc).__name__
            return Outcome.error(InternalError(), state.headers())
        state.status, state.error_code = err.status, err.code
        return Outcome.error(err, state.headers())

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

    def close(self) -> None:
        self.egress.close()

    def list_models(self, caller: Caller) -> dict[str, Any]:
        """OpenAI's model list, each model with an extra ``endpoints``: the paths it serves (the SDK keeps extra
        fields: ``model.model_extra["endpoints"]``)."""
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


def _trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, for sovereign backends only (vLLM joins the same trace)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
