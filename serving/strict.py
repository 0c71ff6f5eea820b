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
  error, so they are a 400 too. The field is never named: its name is caller text (a schema field it is close to
  may be suggested).
- ``json.loads`` on bytes guesses UTF-16 and UTF-32 from the first bytes, and such a body skipped the surrogate
  check. The OpenAI API takes UTF-8 only; so do we (a UTF-8 byte order mark is skipped, as ``json.loads`` does).
- vLLM's validators fail on some bodies with errors of their own (a ``KeyError`` for a named ``tool_choice``
  whose tool has no name): any failure to validate the caller's body is a 400, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from serving.errors import BadRequest
from serving.openai_fields import quotes_caller, safe_param, unknown_fields_message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


class NotUTF8(ValueError):
    """The body is not UTF-8 (UTF-16 or UTF-32 by its first bytes, or not valid UTF-8 at all)."""


def decode(data: bytes) -> str:
    """The body as text: UTF-8 only, a leading UTF-8 byte order mark skipped (raises ``NotUTF8``)."""
    if json.detect_encoding(data) not in {"utf-8", "utf-8-sig"}:
        raise NotUTF8("UTF-16 or UTF-32")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotUTF8("invalid UTF-8") from None


def loads(data: bytes | str) -> Any:
    """``json.loads`` that refuses NaN, Infinity, overflowing numbers and lone surrogates (raises ``ValueError``),
    and bytes that are not UTF-8 (``NotUTF8``, a ``ValueError``)."""
    text = decode(data) if isinstance(data, bytes) else data
    value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    if "\\u" in text:  # only escapes can produce a surrogate; decoded UTF-8 cannot
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
    except ValidationError:
        raise
    except Exception as exc:  # a validator of vLLM's failing on this body, in its own way: still the body's fault
        if not any(cls.__name__ == "VLLMClientError" for cls in type(exc).__mro__):
            raise BadRequest("invalid request: the body does not match the API schema") from None
        param = safe_param(getattr(exc, "parameter", None))
        where = f"{param}: " if param else ""
        reason = str(exc.args[0] if exc.args else "").strip()  # the message alone (str() appends the value)
        if not reason or len(reason) > 200 or quotes_caller(reason, payload):
            reason = "the value is not accepted by the model"
        raise BadRequest(f"invalid request: {where}{reason}", param=param) from None
    reject_unknown_fields(request)
    return request


# The JSON type of each top-level field whose type is the same in every endpoint that has it (``logprobs`` is not:
# a boolean in chat, an integer in completions). Integers may be written 5.0, as JSON Schema allows.
_JSON_TYPES: dict[str, str] = {
    "stream": "boolean", "echo": "boolean", "ignore_eos": "boolean", "parallel_tool_calls": "boolean",
    "max_tokens": "integer", "max_completion_tokens": "integer", "n": "integer", "seed": "integer",
    "top_logprobs": "integer", "best_of": "integer", "top_k": "integer", "dimensions": "integer", "top_n": "integer",
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
    if extra:
        message = unknown_fields_message(len(extra), extra, type(request).model_fields)
        raise BadRequest(message, code="unknown_parameter")
