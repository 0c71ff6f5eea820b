"""One exception hierarchy and one mapping to the OpenAI error envelope.

Messages are written by us, never derived from the request content, so an error can never echo a prompt.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class APIError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.envelope(), status_code=self.status, headers={**self.headers, **(headers or {})})


class BadRequest(APIError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class Unauthorized(APIError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class NotPermitted(APIError):
    status, type, code = 403, "permission_error", "classification_not_permitted"


class NotFound(APIError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class PayloadTooLarge(APIError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class RateLimited(APIError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class Unavailable(APIError):
    status, type, code = 503, "service_unavailable", "no_cleared_backend_available"


class GatewayTimeout(APIError):
    """The request ran past its deadline (``server.request_timeout_s``, or its model's ``request_timeout_s``)."""

    status, type, code = 504, "timeout_error", "request_timeout"

    def __init__(self) -> None:
        super().__init__(
            "the request did not finish within the server's time limit; the response is incomplete or was not started"
        )


class InternalError(APIError):
    """An unexpected failure. The message is fixed: details go to the (content-free) log, not the client."""

    def __init__(self) -> None:
        super().__init__("internal server error")


def error_sse(err: APIError) -> str:
    """A stream that fails after it started ends with this event, never with ``[DONE]``."""
    import json

    return f"data: {json.dumps(err.envelope())}\n\n"
