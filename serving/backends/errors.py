"""Backend error bodies are rewritten before they reach the caller: upstream messages may quote the request."""

from __future__ import annotations

import re
from typing import Any

from serving.backends.base import BackendRefusal, error_envelope
from serving.openai_fields import safe_param

_CODE = re.compile(r"[A-Za-z0-9_.-]{1,63}")

# Known messages that carry no request content, mapped to our own wording.
_SAFE_HINTS = (
    ("maximum context length", "the request exceeds the model's context window (max_model_len)"),
    ("max_tokens", "max_tokens is out of range for this model"),
    ("context_length_exceeded", "the request exceeds the model's context window"),
)


# The OpenAI API's error types by status; engines use their own (vLLM says "BadRequestError").
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
}


def sanitised_refusal(status: int, error: dict[str, Any]) -> BackendRefusal:
    """A ``BackendRefusal`` that keeps the upstream status, type and code but never its free-text message."""
    message = str(error.get("message") or "")
    code = error.get("code")
    hint = next((ours for needle, ours in _SAFE_HINTS if needle in message or needle == code), None)
    text = f"the model backend rejected the request: {hint}" if hint else "the model backend rejected the request"
    type_ = _OPENAI_TYPES.get(status, "invalid_request_error")
    # An upstream's code is a short identifier; its param is kept only as a path of API field names (an upstream
    # may name a caller's logit_bias key or an unknown field there, and those are caller text).
    safe_code = code if isinstance(code, int) or (isinstance(code, str) and _CODE.fullmatch(code)) else None
    param = safe_param(error.get("param"))
    return BackendRefusal(status, error_envelope(text, type_, safe_code or "backend_refused", param))
