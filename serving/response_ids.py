"""Response ids for the Responses API that say which backend holds the response, and for whom.

A backend's own id (vLLM's, OpenAI's) never reaches the caller. The router hands out
``resp_<payload>.<tag>``: the payload is the holding backend's name and its id, base64url-encoded; the tag is an
HMAC-SHA256 over the payload and the caller's identity, under a key the router replicas share. So a continuation
(``previous_response_id``) or a retrieval goes to the backend that holds the earlier turns without a lookup in a
shared store, a response made on a local model can never be continued on a commercial one, and an id that was
forged, altered, or issued to another caller resolves to nothing (a 404, as for an unknown id).

The payload is encoded, not encrypted: an id tells its holder the backend's name and that backend's id, nothing a
caller could not already learn from the ``x-sovereign-backend`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import AsyncGenerator, Callable
from typing import Any

from serving.backends.base import Chunks

PREFIX = "resp_"
_TAG_BYTES = 16
_MAX_ID_CHARS = 1024
# base64url payload, a dot, base64url tag (no padding)
_SHAPE = re.compile(r"resp_([A-Za-z0-9_-]{4,1000})\.([A-Za-z0-9_-]{22})")
KEY_BYTES = 32


def new_key() -> str:
    """A fresh key, as text (what ``server.response_ids_key_env`` names, or one a server makes at start)."""
    return secrets.token_urlsafe(KEY_BYTES)


class ResponseIds:
    def __init__(self, key: str) -> None:
        if len(key) < 16:
            raise ValueError("the response-id key must be at least 16 characters")
        self._key = key.encode()

    def _tag(self, payload: str, owner: str) -> str:
        mac = hmac.new(self._key, f"{payload}\n{owner}".encode(), hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, backend: str, upstream_id: str, owner: str) -> str:
        """The id the caller sees for ``upstream_id``, held by ``backend``, made for ``owner``."""
        raw = json.dumps([backend, upstream_id], separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return f"{PREFIX}{payload}.{self._tag(payload, owner)}"

    def resolve(self, issued: object, owner: str) -> tuple[str, str] | None:
        """``(backend, upstream id)`` for an id this router issued to ``owner``; None for anything else."""
        if not isinstance(issued, str) or len(issued) > _MAX_ID_CHARS:
            return None
        match = _SHAPE.fullmatch(issued)
        if match is None:
            return None
        payload, tag = match.groups()
        if not hmac.compare_digest(tag, self._tag(payload, owner)):
            return None
        try:
            backend, upstream_id = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError):
            return None
        if not isinstance(backend, str) or not isinstance(upstream_id, str):
            return None
        return backend, upstream_id


def rewrite_response(response: dict[str, Any], issue: Callable[[str], str], previous: str | None) -> None:
    """In place: a Response object's ``id`` as the router issues it, and its ``previous_response_id`` as the
    caller sent it (the backend saw its own id for the earlier response; vLLM leaves the field empty)."""
    if isinstance(response.get("id"), str):
        response["id"] = issue(response["id"])
    if previous is not None or response.get("previous_response_id") is not None:
        response["previous_response_id"] = previous


def rewrite_event_chunk(chunk: str, fix: Callable[[dict[str, Any]], None]) -> str:
    """A piece of a Responses API stream (whole ``event: ...\\ndata: {...}\\n\\n`` events) with ``fix`` applied to
    the Response object its lifecycle events carry (``response.created``, ``response.completed``...). Events
    without one (text deltas, items) pass unchanged."""
    if '"response"' not in chunk:
        return chunk
    out = []
    for event in chunk.split("\n\n"):
        if not event:
            continue
        head, sep, data = event.partition("data: ")
        if sep and '"response"' in data:
            obj = json.loads(data)
            if isinstance(obj, dict) and isinstance(obj.get("response"), dict):
                fix(obj["response"])
                data = json.dumps(obj, separators=(",", ":"))
        out.append(f"{head}{sep}{data}\n\n")
    return "".join(out)


async def rewrite_response_events(chunks: Chunks, fix: Callable[[dict[str, Any]], None]) -> AsyncGenerator[str, None]:
    """``chunks`` with ``rewrite_event_chunk`` applied; closing it closes ``chunks`` (which stops the backend)."""
    try:
        async for chunk in chunks:
            yield rewrite_event_chunk(chunk, fix)
    finally:
        await chunks.aclose()
