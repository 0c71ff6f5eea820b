"""HTTP details of the serving edge that the frameworks leave to us: how an event stream ends, and uvicorn's
keep-alive timer on a reset connection."""

from __future__ import annotations

from fastapi.responses import StreamingResponse
from starlette.types import Send

DONE_EVENT = b"data: [DONE]\n\n"


class EventStreamResponse(StreamingResponse):
    """Server-sent events whose final ``data: [DONE]`` goes out together with the end of the body.

    A client that stops reading at ``[DONE]`` (the openai SDK's synchronous client, most hand-written ones) then
    finds the response complete and keeps its connection. Otherwise it closes the connection with the body's end
    still to come, and behind HAProxy each such request costs a new connection to the replica (HAProxy resets
    the old one). Everything before ``[DONE]`` is sent as soon as it arrives, as before; ``[DONE]`` itself waits
    for the relay to finish its bookkeeping (the audit record), which is also when the body used to end.
    """

    async def stream_response(self, send: Send) -> None:
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


def release_reset_connections() -> None:
    """Make uvicorn let go of a connection closed by a reset as it does of one closed cleanly. Idempotent.

    uvicorn arms a keep-alive timer after every response and cancels it in ``connection_lost`` only when the
    close was clean (``exc is None``, uvicorn 0.54 and earlier). A reset leaves the timer holding the
    connection's whole request graph (protocol, transport, scope, ASGI state) for the keep-alive timeout: 90 s in
    a Ray Serve replica. HAProxy resets its connection to the replica whenever a client leaves before a
    response has ended, so the router replica grew by about 6 KB per such request until the timers ran out
    (benchmarks/RESULTS.md, "Gateway overhead"). Same bug: github.com/Soju06/codex-lb/issues/2041.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for protocol in (HttpToolsProtocol, H11Protocol):
        original = protocol.connection_lost
        if getattr(original, "_releases_on_reset", False):
            continue

        def connection_lost(self, exc: Exception | None, _original=original) -> None:  # type: ignore[no-untyped-def]
            _original(self, exc)
            self._unset_keepalive_if_required()  # a no-op when the clean path has done it

        connection_lost._releases_on_reset = True  # type: ignore[attr-defined]
        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
