"""The gateway: the HTTP edge of the router. It admits a request (request id, span, caller, concurrency, body,
declared level: serving/admission.py), hands it to the transport-free router core (serving/router.py), and turns
the router's ``Outcome`` into a response. What each request leaves behind is written by serving/recording.py.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from routing.audit import AuditLog
from routing.budgets import InProcessLedger, Ledger
from routing.classify import classifier_digest
from routing.keys import Caller, KeyStore, ReloadingKeyStore
from routing.ratelimit import RateLimiter, SharedRateLimiter
from serving import admission
from serving.backends.base import Backend, Endpoint
from serving.config import Settings
from serving.egress_gate import EgressGate
from serving.errors import Unavailable
from serving.http_edge import EventStreamResponse
from serving.metrics import Metrics
from serving.oidc import OIDCVerifier
from serving.recording import Recorder, RequestState
from serving.response_ids import ResponseIds, new_key
from serving.router import Outcome, Router, StoredAction, backend_policies, routing_policy_digest

tracer = trace.get_tracer("sovereign.gateway")


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
        self.backends = dict(backends)
        self.audit = audit
        self.metrics = metrics or Metrics()
        auth = settings.auth
        self.ledger: Ledger = ledger or InProcessLedger()
        self.egress = EgressGate(settings)
        policies = backend_policies(settings)
        self.recorder = Recorder(
            audit,
            self.metrics,
            self.ledger,
            policy_sha256=routing_policy_digest(settings, policies, self.egress),
            classifier_sha256=classifier_digest(),
            known_teams=auth.known_teams(),
            models=frozenset(m.name for m in settings.models),
        )
        self.router = Router(
            settings,
            self.backends,
            self.recorder,
            policies=policies,
            egress=self.egress,
            ledger=self.ledger,
            # The router replicas share its key (serving/app.py), so any of them resolves an id another issued.
            response_ids=response_ids or ResponseIds(new_key()),
            metrics=self.metrics,
        )
        self.authenticator = admission.Authenticator(
            keys,
            oidc or (OIDCVerifier(auth.oidc) if auth.oidc is not None else None),
            limiter or RateLimiter(),
            auth.default_rate_per_minute,
        )
        self.in_flight = 0
        for name, backend in self.backends.items():
            if backend.queue_depth is not None:  # local backends: the depth that decides overflow, read at scrape
                self.metrics.queue_depth.labels(name).set_function(functools.partial(_queue_depth, backend))
        # Ray Serve's proxy assigns `x-request-id` (or keeps the caller's) and adds it to every response itself.
        self.behind_serve_proxy = behind_serve_proxy

    # -- the routed endpoints -------------------------------------------------------------------------------

    async def handle(self, endpoint: Endpoint, request: Request) -> Response:
        """The whole life of a routed request. A stream's record is written when the stream ends."""
        state = self._start(endpoint, request, endpoint.path)
        state.started_loop = asyncio.get_running_loop().time()
        state.deadline = state.started_loop + self.settings.server.request_timeout_s
        self.in_flight += 1
        outcome: Outcome | None = None
        deadline = asyncio.timeout_at(state.deadline)  # until the response starts; a stream's relay keeps it after
        try:
            # No exception message or stack goes into a span (messages can quote the body): the recorder writes
            # the error's code and type only.
            with trace.use_span(state.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                async with deadline:
                    outcome = await self._admit_and_route(state, request, deadline)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            outcome = self.router.failed(state, exc)
        except Exception as exc:
            outcome = self.router.failed(state, exc)
        finally:
            self.in_flight -= 1
            if outcome is None or outcome.stream is None:  # a stream writes its record when it ends
                await self.recorder.finish(state)
        return _response(outcome)

    async def _admit_and_route(self, state: RequestState, request: Request, deadline: asyncio.Timeout) -> Outcome:
        caller = await self.authenticate(request)
        state.caller, state.team = caller.name, caller.team
        if self.in_flight > self.settings.server.max_concurrency:
            raise Unavailable(
                "the server is at its concurrency limit; retry later", code="server_busy", headers={"retry-after": "1"}
            )
        body, state.body_bytes = await admission.read_json(request, self.settings.server.max_body_bytes)
        state.declared = admission.declared_level(request)
        return await self.router.route(state, caller, body, deadline)

    async def handle_stored(self, action: StoredAction, response_id: str, request: Request) -> Response:
        """``GET``/``DELETE /v1/responses/{id}`` and ``POST /v1/responses/{id}/cancel``, audited as
        ``/v1/responses:<action>``."""
        state = self._start(Endpoint.RESPONSES, request, f"/v1/responses:{action}")
        state.operation = f"/v1/responses:{action}"
        try:
            with trace.use_span(state.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                async with asyncio.timeout(self.settings.server.request_timeout_s):
                    caller = await self.authenticate(request)
                    state.caller, state.team = caller.name, caller.team
                    outcome = await self.router.stored(state, caller, action, response_id)
        except Exception as exc:
            outcome = self.router.failed(state, exc)
        finally:
            await self.recorder.finish(state)
        return _response(outcome)

    def _start(self, endpoint: Endpoint, request: Request, operation: str) -> RequestState:
        """A request's state, its id and its root span (ended by the recorder when the request ends)."""
        state = RequestState(endpoint, echo_request_id=not self.behind_serve_proxy)
        state.span = tracer.start_span(
            "sovereign.request",
            context=admission.parent_context(request),
            kind=SpanKind.SERVER,
            attributes={"sovereign.endpoint": operation},
        )
        state.request_id = admission.request_id(request, state.request_id)
        return state

    # -- the rest of the API ----------------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Caller:
        """The caller of a request (raises ``Unauthorized``, ``NotPermitted`` or ``RateLimited``)."""
        return await self.authenticator.authenticate(request)

    async def list_models(self, request: Request) -> dict[str, Any]:
        return self.router.list_models(await self.authenticate(request))

    async def readiness(self) -> tuple[bool, dict[str, bool]]:
        return await self.router.readiness()

    async def close(self) -> None:
        """Drain the audit writer and close backend clients (called when the replica stops)."""
        await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)
        self.router.close()
        await self.audit.aclose()


def _response(outcome: Outcome) -> Response:
    if outcome.stream is not None:
        return EventStreamResponse(outcome.stream, media_type="text/event-stream", headers=outcome.headers)
    return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers)


def _queue_depth(backend: Backend) -> int:
    return backend.queue_depth or 0
