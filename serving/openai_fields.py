"""The OpenAI API's request fields, what a local backend does with each, and how an error may point at any part of a
body without quoting what the caller wrote there.

The field names and types come from the official ``openai`` SDK's request types (OpenAI's own schema) and, for a
local backend, from vLLM's request models (registered by ``serving/backends/local.py``). Everything else in a body
was chosen by the caller and may hold anything, a name or an NHS number: a ``logit_bias`` or ``vllm_xargs`` key, the
name of an unknown top-level field, a value. An error message or ``param`` names fields of the schema, list indices
and nothing else; a caller's key is described (``<key>``), never quoted.
"""

from __future__ import annotations

import contextlib
import difflib
import typing
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from serving.backends.base import Endpoint

# Fields of the OpenAI API that vLLM's request models do not define, and that a local backend ignores: they ask
# OpenAI for bookkeeping (storing the completion, a billing tier, prompt-cache routing, an end-user id for abuse
# monitoring, key-value tags) or give a hint that does not change what the answer is (verbosity, a predicted output).
IGNORED_LOCALLY: frozenset[str] = frozenset(
    {
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "verbosity",
        "prediction",
    }
)
# Values of other vLLM-unknown fields that ask for nothing beyond the default, so a local backend can ignore them too.
DEFAULT_VALUES: Mapping[str, tuple[Any, ...]] = {"modalities": (["text"],), "best_of": (1,)}

KEY = "<key>"  # how a caller-chosen key appears in an error


OPENAI: frozenset[Endpoint] = frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS})
"""The endpoints the OpenAI API has (and its SDK types); score and rerank are vLLM's."""


def _sdk_params(endpoint: Endpoint) -> Any:
    from openai.types import completion_create_params, embedding_create_params
    from openai.types.chat import completion_create_params as chat_create_params

    return {
        Endpoint.CHAT: chat_create_params.CompletionCreateParamsBase,
        Endpoint.COMPLETIONS: completion_create_params.CompletionCreateParamsBase,
        Endpoint.EMBEDDINGS: embedding_create_params.EmbeddingCreateParams,
    }[endpoint]


@cache
def openai_field_types(endpoint: Endpoint) -> Mapping[str, Any]:
    """The top-level request fields of ``endpoint`` in the OpenAI API, with their SDK types."""
    return typing.get_type_hints(_sdk_params(endpoint))


@cache
def _adapter(endpoint: Endpoint, name: str) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(openai_field_types(endpoint)[name])
    except Exception:  # a type pydantic cannot build a validator for: the backend that takes it validates it
        return None


def check_type(endpoint: Endpoint, name: str, value: Any) -> bool:
    """Whether ``value`` has the type the OpenAI API gives the field (strictly: no coercion). ``None`` is unset."""
    adapter = _adapter(endpoint, name)
    if value is None or adapter is None:
        return True
    try:
        adapter.validate_python(value, strict=True)
    except (ValidationError, ValueError, TypeError, RecursionError):
        return False
    return True


# -- the schema's names, and errors that use only them ---------------------------------------------------------

_registered: set[str] = set()


def _property_names(schema: Any, out: set[str]) -> set[str]:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                out.update(k for k in properties if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


@cache
def _sdk_names() -> frozenset[str]:
    from openai.types import completion_create_params, embedding_create_params
    from openai.types.chat import completion_create_params as chat_create_params

    names: set[str] = set()
    for params in (
        chat_create_params.CompletionCreateParamsNonStreaming,
        completion_create_params.CompletionCreateParamsNonStreaming,
        embedding_create_params.EmbeddingCreateParams,
    ):
        try:
            _property_names(TypeAdapter(params).json_schema(), names)
        except Exception:  # fall back to the top level
            names.update(typing.get_type_hints(params))
    return frozenset(names)


def register_schema(adapter: TypeAdapter[Any]) -> None:
    """Add the field names of a backend's request model (vLLM's extensions) to the names an error may show."""
    with contextlib.suppress(Exception):  # a model pydantic cannot describe: its names stay unshown
        _registered.update(_property_names(adapter.json_schema(), set()))


def schema_names() -> frozenset[str]:
    return _sdk_names() | _registered


def field_path(loc: Sequence[str | int], body: Any) -> tuple[str, str | None]:
    """``(path, param)`` for a validation error's location, e.g. ``("logit_bias.<key>", "logit_bias")``.

    The location is followed through the body: a dict key the caller wrote is shown only if it is a field name of
    the schema; a list index is shown; a segment that is not in the body (pydantic's union and validator tags) is
    shown only if it names a field (a required field that is missing), else dropped. ``param`` is the path up to
    the first described key.
    """
    names = schema_names()
    parts: list[str] = []
    param: str | None = None
    node = body
    for segment in loc:
        if isinstance(node, dict) and isinstance(segment, str) and segment in node:
            shown = segment if segment in names else KEY
            node = node[segment]
        elif isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
            shown, node = str(segment), node[segment]
        elif isinstance(segment, str) and segment in names:
            shown = segment
        else:
            continue
        if shown == KEY and param is None:
            param = ".".join(parts) or None
        parts.append(shown)
    path = ".".join(parts)
    return path, (param if KEY in parts else path or None)


def safe_param(param: Any) -> str | None:
    """An upstream or validator ``param`` if it is a path of schema names and indices (``messages[0].content``)."""
    if not isinstance(param, str) or not param or len(param) > 128:
        return None
    names = schema_names()
    segments = [s for s in param.replace("[", ".").replace("]", ".").split(".") if s]
    # A list index is a short number; a long one may be a caller's key (a logit_bias "token id" can be an NHS number).
    return param if segments and all((s.isdigit() and len(s) <= 5) or s in names for s in segments) else None


_MAX_NODES = 100_000


def _caller_text(body: Any) -> Iterable[str] | None:
    """The strings and long numbers in ``body`` (keys too) that are not schema names; None if it is too big to walk."""
    names = schema_names()
    found: set[str] = set()
    stack = [body]
    nodes = 0
    while stack:
        nodes += 1
        if nodes > _MAX_NODES:
            return None
        node = stack.pop()
        if isinstance(node, str):
            if len(node) >= 3 and node not in names:
                found.add(node)
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int | float):
            text = repr(node)
            if len(text) >= 3:
                found.add(text)
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return found


def quotes_caller(message: str, body: Any) -> bool:
    """Whether ``message`` (say, a validator's) contains text or a number from the body. Fails closed: a body too
    big to check counts as quoted."""
    found = _caller_text(body)
    if found is None:
        return True
    return any(text in message for text in found)


def unknown_fields_message(count: int, unknown: Iterable[str], known: Iterable[str]) -> str:
    """The 400 message for fields no backend knows; a schema name is suggested for a near miss, never the key."""
    noun = "argument" if count == 1 else "arguments"
    message = f"invalid request: {count} unrecognized request {noun}"
    known = sorted(known)
    hints = sorted(
        {
            m
            for key in unknown
            if isinstance(key, str) and len(key) <= 64
            for m in difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        }
    )
    if hints:
        message += f" (did you mean {', '.join(hints)}?)"
    return message
