"""A local vLLM model: Ray Serve LLM's ``LLMServer`` deployment, reached through a ``DeploymentHandle``.

Requests are validated into vLLM's own protocol types in the ingress (a bad body is a 400 before anything is
queued). Streams come back from ``LLMServer`` in batches (lists of ``data: ...`` strings); they are flattened here.
The ingress always asks the engine for usage, so the audit record has token counts, and drops the usage-only
chunk again when the caller did not ask for it. An error inside a stream (an ``ErrorResponse``, or the error event
vLLM sends when generation fails) ends it with ``BackendFailure("engine_error")``; its text is not forwarded.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from routing.levels import Level
from serving import openai_fields, strict
from serving.backends.base import (
    BackendFailure,
    BackendRefusal,
    Endpoint,
    GuardedStream,
    Opened,
    Usage,
    error_envelope,
    take_response_usage,
    take_usage,
    wants_usage,
    with_usage,
)
from serving.backends.errors import sanitised_refusal
from serving.config import VLLMBackendConfig
from serving.errors import BadRequest
from serving.thirdparty import raw_request_info

log = logging.getLogger("sovereign.backends.local")


def request_models() -> dict[Endpoint, Any]:
    """vLLM's request models (through Ray Serve LLM where it has them), imported lazily: importing vLLM costs
    seconds. Scores take every form vLLM's ``/score`` takes (Ray's ``ScoreRequest`` is only its ``text_1``/``text_2``
    one); rerank and the Responses API are vLLM's own."""
    from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
    from vllm.entrypoints.openai.responses.protocol import ResponsesRequest
    from vllm.entrypoints.pooling.scoring.protocol import RerankRequest, ScoreRequest

    return {
        Endpoint.CHAT: ChatCompletionRequest,
        Endpoint.COMPLETIONS: CompletionRequest,
        Endpoint.EMBEDDINGS: EmbeddingRequest,
        Endpoint.SCORE: ScoreRequest,
        Endpoint.RERANK: RerankRequest,
        Endpoint.RESPONSES: ResponsesRequest,
    }


def request_types() -> dict[Endpoint, Any]:
    """A validator per endpoint for vLLM's request models. Their field names become names an error may show
    (``serving.openai_fields``)."""
    from pydantic import TypeAdapter

    types = {endpoint: TypeAdapter(model) for endpoint, model in request_models().items()}
    for adapter in types.values():
        openai_fields.register_schema(adapter)
    return types


def model_fields(model: Any) -> frozenset[str]:
    """The top-level fields a request model defines (every member's, for a union such as vLLM's embeddings)."""
    members = typing.get_args(model) or (model,)
    return frozenset(name for member in members for name in getattr(member, "model_fields", {}))


def validation_message(exc: ValidationError, body: Any) -> tuple[str, str | None]:
    """A 400 message naming the field and the problem, never the offending value nor a key the caller chose."""
    first = exc.errors()[0]
    path, param = openai_fields.field_path(first.get("loc", ()), body)
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if len(msg) > 200 or openai_fields.quotes_caller(msg, body):
        msg = "the value is not accepted"
    return f"invalid request: {path or 'body'}: {msg}", param


class LocalBackend:
    """Adapter from the backend protocol to an ``LLMServer`` handle."""

    def __init__(self, config: VLLMBackendConfig, handle: Any, served_model_name: str) -> None:
        self.name = config.name
        self.sovereign = True
        self.max_classification: Level = config.max_classification
        self.task = config.task
        self.max_queue_depth = config.max_queue_depth
        self.served_model_name = served_model_name
        self._handle = handle.options(stream=True)
        self._plain_handle = handle
        self._types = request_types()
        # The OpenAI API's fields per endpoint that vLLM's request model does not define (score and rerank are
        # vLLM's own endpoints: none).
        self._openai_only = {
            endpoint: frozenset(openai_fields.openai_field_types(endpoint)) - model_fields(model)
            for endpoint, model in request_models().items()
            if endpoint in openai_fields.OPENAI
        }
        self.in_flight = 0
        self.available = True  # a replica of the engine runs (serving/availability.py keeps it current)

    def serves(self, endpoint: Endpoint) -> bool:
        return endpoint.pooling == (self.task == "embed")

    @property
    def overloaded(self) -> bool:
        return self.in_flight >= self.max_queue_depth

    @property
    def queue_depth(self) -> int:
        return self.in_flight

    async def stored(
        self, action: Literal["retrieve", "delete", "cancel"], upstream_id: str, *, request_id: str
    ) -> Opened:
        """A response in the engine's Responses API store (``store_responses``). The store is per replica: with
        several, Serve may ask one that does not hold it (a 404)."""
        try:
            answer = await self._plain_handle.stored_response.remote(action, upstream_id)
        except Exception as exc:
            raise _failure(exc) from None
        if _is_error(answer):
            raise _error_response(answer)
        return Opened(body=answer)

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self._plain_handle.check_health.remote(), timeout=5)
        except Exception:
            return False
        self.available = True  # a replica answered: sooner than the next look at Serve's status
        return True

    async def close(self) -> None:
        return None

    def validate(self, endpoint: Endpoint, body: dict[str, Any]) -> BaseModel:
        """Parse into vLLM's request model; raises ``ValidationError`` or ``BadRequest`` for a bad body.

        The OpenAI API's fields that vLLM does not know are checked against the API's types and left out: those in
        ``IGNORED_LOCALLY`` mean nothing here; any other (``functions``, ``audio``...) is refused by ``open`` when
        this backend is the one to serve the request, so that a route whose first choice is OpenAI still takes it.
        """
        payload = {**body, "model": self.served_model_name}
        for name in self._openai_only.get(endpoint, frozenset()) & body.keys():
            if not openai_fields.check_type(endpoint, name, body[name]):
                raise BadRequest(
                    f"invalid request: {name}: the value does not have the type the API gives it", param=name
                )
            del payload[name]
        if payload.get("stream") and endpoint in (Endpoint.CHAT, Endpoint.COMPLETIONS):
            payload = with_usage(payload)
        return strict.validate(self._types[endpoint], payload)

    def unsupported(self, endpoint: Endpoint, body: dict[str, Any]) -> list[str]:
        """The OpenAI fields in ``body`` that ask for something a local model cannot do (a non-default value)."""
        openai_only = self._openai_only.get(endpoint, frozenset())
        return sorted(
            name
            for name in (openai_only - openai_fields.IGNORED_LOCALLY) & body.keys()
            if body[name] is not None and body[name] not in openai_fields.DEFAULT_VALUES.get(name, ())
        )

    async def open(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        *,
        request_id: str,
        trace_headers: Mapping[str, str],
        parsed: Any = None,
    ) -> Opened:
        unsupported = self.unsupported(endpoint, body)
        if unsupported:
            raise BackendRefusal(
                400,
                error_envelope(
                    f"invalid request: {unsupported[0]}: not supported by the local model this request is routed to",
                    "invalid_request_error",
                    "unsupported_parameter",
                    unsupported[0],
                ),
            )
        request = parsed if parsed is not None else self.validate(endpoint, body)
        # vLLM takes its request id and W3C trace context from these headers: its spans join the router's trace.
        raw_info = raw_request_info({"x-request-id": request_id, **trace_headers})
        caller_wants_usage = wants_usage(body)
        method = endpoint.value  # LLMServer's method of the same name (``rerank``: serving/engine.py's)
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1

        gen = None
        try:
            gen = getattr(self._handle, method).remote(request, raw_info)
            first = await anext(gen)
        except StopAsyncIteration:
            release()
            raise BackendFailure("empty_response") from None
        except BaseException as exc:
            release()
            if gen is not None:  # cancelled (the request's deadline, a client gone): abort it in the engine too
                gen.cancel()
            raise _failure(exc) from None

        items = first if isinstance(first, list) else [first]
        if items and _is_error(items[0]):
            release()
            gen.cancel()
            raise _error_response(items[0])
        if len(items) == 1 and isinstance(items[0], BaseModel | dict):
            release()
            data = items[0] if isinstance(items[0], dict) else items[0].model_dump(mode="json", exclude_none=False)
            usage = Usage()
            usage.update(data.get("usage"))
            return Opened(body=data, usage=usage)

        usage = Usage()

        async def chunks() -> AsyncGenerator[str, None]:
            try:
                batch: list[Any] = items
                while True:
                    # One body chunk per engine batch: every chunk is a message through Serve's proxy, so
                    # re-splitting the batch would multiply the per-message cost on the hot path.
                    events: list[str] = []
                    for item in batch:
                        if _is_error(item) or _is_error_event(item):
                            if events:
                                yield "".join(events)
                            raise BackendFailure("engine_error")
                        if endpoint is Endpoint.RESPONSES:  # typed events; usage in the terminal one
                            event: str | None = str(item)
                            take_response_usage(str(item), usage)
                        else:
                            event = take_usage(str(item), usage, caller_wants_usage)
                        if event is not None:
                            events.append(event)
                    if events:
                        yield "".join(events)
                    try:
                        nxt = await anext(gen)
                    except StopAsyncIteration:
                        return
                    except BaseException as exc:
                        raise _failure(exc) from None
                    batch = nxt if isinstance(nxt, list) else [nxt]
            finally:
                stop()

        def stop() -> None:
            if not released:
                release()
                gen.cancel()  # a consumer that stops early (client gone) aborts the generation in the engine

        async def stop_unread() -> None:
            stop()

        return Opened(chunks=GuardedStream(chunks(), stop_unread), usage=usage)


def _is_error(item: Any) -> bool:
    return type(item).__name__ == "ErrorResponse"


def _is_error_event(item: Any) -> bool:
    """vLLM's answer to a failure inside a chat or completions stream: an event holding an error object
    (``data: {"error": {...}}``, from ``json.dumps``), then ``[DONE]``. Its message is the exception's text."""
    return isinstance(item, str) and item.startswith('data: {"error":')


def _error_response(item: Any) -> Exception:
    error = item.error
    status = int(error.code) if isinstance(error.code, int) else 500
    if 400 <= status < 500 and status != 429:
        return sanitised_refusal(status, {"message": error.message, "type": error.type, "param": error.param})
    return BackendFailure(f"http_{status}")


def _failure(exc: BaseException) -> BaseException:
    """What a failure of the engine's stream becomes here. Serve cancels a handle's request itself when the HTTP
    request that made it is cancelled (the client left): that is the client's cancellation, reported as one, and
    it can reach the relay before the HTTP edge's own does."""
    if isinstance(exc, asyncio.CancelledError):
        return exc
    if isinstance(exc, BackendFailure | BackendRefusal):
        return exc
    from ray.serve.exceptions import BackPressureError, RequestCancelledError

    if isinstance(exc, RequestCancelledError):
        return asyncio.CancelledError()
    if isinstance(exc, BackPressureError):
        return BackendFailure("overloaded")
    log.warning("engine request failed", extra={"error_type": type(exc).__name__})  # the type only: no text
    return BackendFailure("unavailable")
