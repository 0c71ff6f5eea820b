"""Admission at the HTTP edge: who is calling, what they sent, and under which id and trace it is recorded.

Everything here reads a Starlette ``Request``; nothing here classifies or routes (serving/router.py does, on what
this returns).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context

from routing.keys import Caller, KeyStore, ReloadingKeyStore, bearer_token
from routing.levels import Level
from routing.ratelimit import RateLimiter, SharedRateLimiter, retry_after_header
from serving import strict
from serving.errors import BadRequest, NotPermitted, PayloadTooLarge, RateLimited, Unauthorized
from serving.http_edge import safe_request_id
from serving.oidc import MAX_TOKEN_CHARS, OIDCVerifier, TokenNotMapped, TokenRefused, looks_like_jwt

DECLARED_HEADER = "x-sovereign-classification"


class Authenticator:
    """API keys and, where configured, OIDC bearer tokens; then the caller's request rate."""

    def __init__(
        self,
        keys: KeyStore | ReloadingKeyStore,
        oidc: OIDCVerifier | None,
        limiter: RateLimiter | SharedRateLimiter,
        default_rate_per_minute: int,
    ) -> None:
        self.keys = keys
        self.oidc = oidc
        self.limiter = limiter
        self.default_rate_per_minute = default_rate_per_minute

    async def authenticate(self, request: Request) -> Caller:
        """The caller, or ``Unauthorized``, ``NotPermitted`` (an identity no rule maps) or ``RateLimited``."""
        header = request.headers.get("authorization")
        token = bearer_token(header, max_chars=MAX_TOKEN_CHARS) if self.oidc is not None else None
        if token is not None and looks_like_jwt(token):
            caller = await self._verify_token(token)
        else:
            found = self.keys.authenticate(header)
            if found is None:
                raise Unauthorized("missing or unknown API key; send `Authorization: Bearer <key>`")
            if found.expired():
                raise Unauthorized("the API key has expired", code="expired_api_key")
            caller = found
        rate = caller.rate_per_minute or self.default_rate_per_minute
        wait = await self.limiter.acheck(caller.name, rate)  # shared by the router replicas when there are several
        if wait is not None:
            raise RateLimited(
                f"rate limit of {rate} requests per minute exceeded", headers={"retry-after": retry_after_header(wait)}
            )
        return caller

    async def _verify_token(self, token: str) -> Caller:
        assert self.oidc is not None
        try:
            if self.oidc.uses_network:  # a JWKS fetch blocks: keep it off the event loop
                return await asyncio.to_thread(self.oidc.verify, token)
            return self.oidc.verify(token)
        except TokenRefused as exc:
            raise Unauthorized(f"invalid bearer token: {exc.reason}", code="invalid_token") from None
        except TokenNotMapped:
            raise NotPermitted(
                "your identity is not permitted to use this service (no rule maps its groups or roles)",
                code="identity_not_permitted",
            ) from None


async def read_json(request: Request, limit: int) -> tuple[dict[str, Any], int]:
    """The body as a JSON object, and its size in bytes; a body over ``limit`` is refused before it is all read."""
    declared_length = request.headers.get("content-length")
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    try:
        body = strict.loads(b"".join(chunks))  # no NaN/Infinity: they hung the engine
    except strict.NotUTF8:
        raise BadRequest(
            "invalid request: the body must be JSON encoded as UTF-8 (UTF-16 and UTF-32 are not accepted)",
            code="invalid_encoding",
        ) from None
    except (ValueError, RecursionError):
        raise BadRequest("invalid request: the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("invalid request: the body must be a JSON object")
    return body, size


def declared_level(request: Request) -> Level | None:
    """The level the caller declares (``X-Sovereign-Classification``); it can only raise the detected one."""
    values = request.headers.getlist(DECLARED_HEADER)
    if not values:
        return None
    try:  # repeated headers: the highest wins, so a second, lower one can never lower the level
        return max(Level.parse(value) for value in values)
    except ValueError:
        raise BadRequest(
            "invalid X-Sovereign-Classification header: not a classification level",
            param=DECLARED_HEADER,
            code="invalid_classification",
        ) from None


def request_id(request: Request, generated: str) -> str:
    """The caller's (or the proxy's) ``x-request-id`` if it is a UUID or a hex token, else ``generated``.

    The id is echoed, logged, put in spans and written into the audit chain, where it can never be redacted: any
    other value (an e-mail address, an NHS number) is replaced, not kept. Behind Ray Serve the edge has done the
    same already (``http_edge.RequestIdGuard``), so the id here is the one the proxy echoes.
    """
    return safe_request_id(request.headers.get("x-request-id")) or generated


def parent_context(request: Request) -> Context:
    """The request span's parent: Ray Serve's replica span when Serve's tracing is on (itself a child of the
    caller's ``traceparent``), else the caller's context itself."""
    if trace.get_current_span().get_span_context().is_valid:
        return context.get_current()
    return propagate.extract(request.headers)
