"""Strict request parsing: what Python's ``json`` and vLLM's request models let through, but the API must refuse.

- ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e999``) are not JSON (RFC 8259), yet
  ``json.loads`` accepts them; a ``temperature`` of NaN reached the engine and hung the request. They are a 400.
- Lone surrogates (``"\\ud800"``) are valid JSON escapes but not text: the tokenizer fails on them and the request
  came back as a 503. They are a 400.
- vLLM's request validators raise their own ``VLLMClientError`` (not a ``ValueError``) for some bad values, such as
  an empty prompt, which escaped as a 500. They are a 400 naming the parameter.
- vLLM's request models coerce types (pydantic's lax mode): ``"stream": "yes"`` was streamed, ``"max_tokens":
  true`` meant 1 token, ``"temperature": "0.5"`` was 0.5. The OpenAI API refuses these; the top-level fields whose
  JSON type it fixes must have that type (``null`` is still "not set"), or it is a 400 naming the field.
- vLLM's request models accept unknown fields and ignore them (``extra="allow"``). The OpenAI API refuses them
  ("Unrecognized request argument"), and silently ignoring a misspelt safety or sampling field is worse than an
  error, so they are a 400 too. The field is named only when it looks like a field name: keys are caller text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, TypeAdapter

from serving.errors import BadRequest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def loads(data: bytes | str) -> Any:
    """``json.loads`` that refuses NaN, Infinity, overflowing numbers and lone surrogates (raises ``ValueError``)."""
    value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    escaped = b"\\u" in data if isinstance(data, bytes) else "\\u" in data
    if escaped:  # only escapes can produce a surrogate; UTF-8 input cannot
        _check_text(value)
    return value


def _check_text(value: Any) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            node.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def validate(adapter: TypeAdapter[Any], payload: dict[str, Any]) -> Any:
    """Parse ``payload`` with one of vLLM's request models, strictly (see the module docstring).

    Raises pydantic's ``ValidationError`` as before, or ``BadRequest``.
    """
    try:
        request = adapter.validate_python(payload)
    except Exception as exc:
        if not any(cls.__name__ == "VLLMClientError" for cls in type(exc).__mro__):
            raise
        param = getattr(exc, "parameter", None)
        param = param if isinstance(param, str) and param.isidentifier() and len(param) <= 64 else None
        where = f"{param}: " if param else ""
        raise BadRequest(f"invalid request: {where}the value is not accepted by the model", param=param) from None
    reject_unknown_fields(request)
    return request


# The JSON type of each top-level field whose type is the same in every endpoint that has it (``logprobs`` is not:
# a boolean in chat, an integer in completions). Integers may be written 5.0, as JSON Schema allows.
_JSON_TYPES: dict[str, str] = {
    "stream": "boolean", "echo": "boolean", "ignore_eos": "boolean", "parallel_tool_calls": "boolean",
    "max_tokens": "integer", "max_completion_tokens": "integer", "n": "integer", "seed": "integer",
    "top_logprobs": "integer", "best_of": "integer", "top_k": "integer", "dimensions": "integer",
    "temperature": "number", "top_p": "number", "frequency_penalty": "number", "presence_penalty": "number",
    "min_p": "number", "repetition_penalty": "number",
    "model": "string", "user": "string", "encoding_format": "string",
}  # fmt: skip


def _has_json_type(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return type(value) is bool
    if kind == "string":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return kind == "number" or isinstance(value, int) or value.is_integer()


def check_json_types(body: dict[str, Any]) -> None:
    """Raise ``BadRequest`` when a well-known top-level field has the wrong JSON type (see the module docstring)."""
    for name, kind in _JSON_TYPES.items():
        value = body.get(name)
        if value is not None and not _has_json_type(value, kind):
            article = "an" if kind[0] == "i" else "a"
            raise BadRequest(f"invalid request: {name}: must be {article} {kind}", param=name)


def reject_unknown_fields(request: BaseModel) -> None:
    """Raise ``BadRequest`` when the parsed request carried top-level fields its model does not define."""
    extra = request.model_extra or {}
    if not extra:
        return
    names = sorted(str(k) for k in extra)
    shown = [n for n in names if len(n) <= 64 and n.replace("_", "").isalnum() and n.isascii()]
    if len(shown) == len(names):
        raise BadRequest(f"invalid request: unrecognized request argument(s): {', '.join(shown)}",
                         param=shown[0], code="unknown_parameter")
    raise BadRequest("invalid request: unrecognized request argument(s)", code="unknown_parameter")
