"""The HTTP surface: an OpenAI-compatible FastAPI app around a ``Gateway``. Runs under Ray Serve or plain uvicorn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.backends.base import Endpoint
from serving.errors import APIError, BadRequest
from serving.gateway import Gateway


def _envelope(status: int, message: str, type_: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}}, status_code=status)


def create_app(gateway: Gateway) -> FastAPI:
    """The API. Prometheus metrics are not on it (``serving.metrics.serve_metrics``); the OpenAPI document needs an
    API key unless ``server.api_docs`` says otherwise, and the interactive pages exist only when it is ``public``."""
    docs = gateway.settings.server.api_docs
    public = docs == "public"
    app = FastAPI(
        title="Sovereign inference server",
        version="0.1.0",
        description="OpenAI-compatible API; requests are classified and routed to cleared backends.",
        openapi_url="/openapi.json" if public else None,
        docs_url="/docs" if public else None,
        redoc_url="/redoc" if public else None,
    )
    app.state.gateway = gateway

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _envelope(404, "unknown path", "invalid_request_error", "not_found")
        if exc.status_code == 405:
            return _envelope(405, "method not allowed", "invalid_request_error", "method_not_allowed")
        return _envelope(exc.status_code, "request failed", "invalid_request_error", f"http_{exc.status_code}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return BadRequest("invalid request").response()

    for (
        endpoint
    ) in Endpoint:  # the routed endpoints: admitted, then classified and routed (serving/gateway.py, router.py)
        app.add_api_route(
            endpoint.path,
            _routed(gateway, endpoint),
            methods=["POST"],
            name=endpoint.value,
            openapi_extra=_body_schema(endpoint.value),
        )

    @app.get("/v1/responses/{response_id}")
    async def retrieve_response(response_id: str, request: Request) -> Response:
        return await gateway.handle_stored("retrieve", response_id, request)

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str, request: Request) -> Response:
        return await gateway.handle_stored("delete", response_id, request)

    @app.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(response_id: str, request: Request) -> Response:
        return await gateway.handle_stored("cancel", response_id, request)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        return await gateway.list_models(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok, backends = await gateway.readiness()
        return JSONResponse({"ready": ok, "backends": backends}, status_code=200 if ok else 503)

    if docs == "authenticated":

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request) -> JSONResponse:
            await gateway.authenticate(request)
            return JSONResponse(app.openapi())

    return app


def _routed(gateway: Gateway, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await gateway.handle(endpoint, request)

    return handle


def _body_schema(kind: str) -> dict[str, Any]:
    """A minimal OpenAPI request schema so generated clients and fuzzers know the body's shape."""
    message = {"type": "object", "properties": {"role": {"type": "string"}, "content": {}}, "required": ["role"]}
    texts = {"oneOf": [{"type": "string"}, {"type": "array"}]}
    fields: dict[str, dict[str, Any]] = {
        "chat": {"messages": {"type": "array", "items": message}},
        "completions": {"prompt": texts},
        "embeddings": {"input": texts},
        # vLLM's score also takes text_1/text_2, data_1/data_2 and queries/items in place of queries/documents.
        "score": {"queries": texts, "documents": texts},
        "rerank": {"query": {"type": "string"}, "documents": texts, "top_n": {"type": "integer"}},
        "responses": {"input": texts, "instructions": {"type": "string"}, "previous_response_id": {"type": "string"}},
    }
    common = {
        "model": {"type": "string"},
        "max_tokens": {"type": "integer"},
        "stream": {"type": "boolean"},
        "temperature": {"type": "number"},
    }
    required = ["model"] if kind == "score" else ["model", next(iter(fields[kind]))]
    schema = {"type": "object", "properties": {**common, **fields[kind]}, "required": required}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
