"""HTTP details of the serving edge that the frameworks leave to us: how an event stream ends and the request headers
Ray Serve acts on before our code runs. (uvicorn's keep-alive timer on a reset connection: serving/thirdparty.py.)"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

DONE_EVENT = b"data: [DONE]\n\n"


class EventStreamResponse(StreamingResponse):
    """Server-sent events whose final ``data: [DONE]`` goes out together with the end of the body.

    A client that stops reading at ``[DONE]`` (the openai SDK's synchronous client, most hand-written ones) then
    finds the response complete and keeps its connection. Otherwise it closes the connection with the body's end
    still to come, and behind HAProxy each such request costs a new connection to the replica (HAProxy resets
    the old one). Everything before ``[DONE]`` is sent as soon as it arrives, as before; ``[DONE]`` itself waits
    for the relay to finish its bookkeeping (the audit record), so the body still ends after the record is written.
    """

    async def stream_response(self, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            held = b""
            async for chunk in self.body_iterator:
                data = chunk.encode(self.charset) if isinstance(chunk, str) else bytes(chunk)
                if held and data:  # something after [DONE] (never expected): keep the order
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                    held = b""
                if data.endswith(DONE_EVENT):
                    data, held = data[: -len(DONE_EVENT)], DONE_EVENT
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": held, "more_body": False})
        finally:
            # However the response ends (a client gone, even before the first chunk), the stream is closed, so its
            # generation is cancelled and its request recorded; shielded, since the task may be being cancelled.
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await asyncio.shield(aclose())


# A caller's request id is kept only if it is one of these: a UUID, or a hex token with at least one letter (a
# string of digits alone could be an NHS, card or phone number). Anything else is replaced by a generated one.
_REQUEST_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?=[0-9]*[a-fA-F])[0-9a-fA-F]{16,64}"
)
REQUEST_ID_HEADER = b"x-request-id"
# Headers with which a caller could steer Ray Serve itself: its per-request timeout (past ours), turning off the
# cancellation of a request whose client has gone, model multiplexing and session affinity (both logged by Serve).
RAY_CONTROL_HEADERS = frozenset(
    {
        b"x-request-timeout-seconds",
        b"x-request-disconnect-disabled",
        b"serve_multiplexed_model_id",
        b"serve-multiplexed-model-id",
        b"x-session-id",
    }
)


def safe_request_id(value: str | None) -> str | None:
    """``value`` if it may be kept as a request id (echoed, logged, traced, audited), else None."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


class RequestIdGuard:
    """ASGI middleware in front of Ray Serve's own: an ``x-request-id`` that is not a UUID or a hex token is removed
    (Serve then generates one, uses it in its logs and echoes it, as for a request without one), and so are the
    headers that control Serve itself (``RAY_CONTROL_HEADERS``). Requests that need neither pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            if any(_drop(name, value, headers) for name, value in headers):
                scope = dict(scope, headers=_guarded(headers))
        await self.app(scope, receive, send)


def _drop(name: bytes, value: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    name = name.lower()
    if name in RAY_CONTROL_HEADERS:
        return True
    if name != REQUEST_ID_HEADER:
        return False
    ids = [v for n, v in headers if n.lower() == REQUEST_ID_HEADER]
    return len(ids) > 1 or safe_request_id(value.decode("latin-1")) is None


def _guarded(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in headers if not _drop(n, v, headers)]


def serve_http_middlewares() -> list[Any]:
    """Ray Serve's HTTP proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``): the middlewares its proxy
    and every direct-ingress replica put in front of Serve's own request-id middleware."""
    from starlette.middleware import Middleware

    return [Middleware(RequestIdGuard)]


RAY_HTTP_CALLBACK = "serving.http_edge:serve_http_middlewares"
