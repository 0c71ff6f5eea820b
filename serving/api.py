"""The HTTP surface: an OpenAI-compatible FastAPI app around a ``Gateway``. Runs under Ray Serve or plain uvicorn."""

from __future__ import annotations

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

    @app.post("/v1/chat/completions", openapi_extra=_body_schema("chat"))
    async def chat(request: Request) -> Response:
        return await gateway.handle(Endpoint.CHAT, request)

    @app.post("/v1/completions", openapi_extra=_body_schema("completions"))
    async def completions(request: Request) -> Response:
        return await gateway.handle(Endpoint.COMPLETIONS, request)

    @app.post("/v1/embeddings", openapi_extra=_body_schema("embeddings"))
    async def embeddings(request: Request) -> Response:
        return await gateway.handle(Endpoint.EMBEDDINGS, request)

    @app.post("/v1/score", openapi_extra=_body_schema("score"))
    async def score(request: Request) -> Response:
        return await gateway.handle(Endpoint.SCORE, request)

    @app.post("/v1/rerank", openapi_extra=_body_schema("rerank"))
    async def rerank(request: Request) -> Response:
        return await gateway.handle(Endpoint.RERANK, request)

    @app.post("/v1/responses", openapi_extra=_body_schema("responses"))
    async def responses(request: Request) -> Response:
        return await gateway.handle(Endpoint.RESPONSES, request)

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
