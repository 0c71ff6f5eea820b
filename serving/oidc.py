"""OIDC bearer tokens: a JWT from the department's identity provider, verified here and mapped to a caller.

PyJWT does the verification (signature, ``exp``, ``nbf``, ``iat``, ``iss``, ``aud``). What this module adds:

* Only asymmetric algorithms, from the configured list, and always the algorithm bound to the signing key (PyJWT's
  ``PyJWK``), never the one the token's header names: ``alg: none`` and an HS256 token "signed" with the provider's
  public key are refused before any key is used. Symmetric (``oct``) keys in a JWKS are ignored.
* Keys come from a JWKS file (re-read when it changes: a mounted Secret or ConfigMap) or a JWKS URL (PyJWT's
  ``PyJWKClient`` with its cache; an unknown ``kid`` refetches, at most once per cooldown).
* Claims are mapped by configured rules (:func:`map_claims`) to a caller, a team, a floor, a ceiling and allowed
  models. Reasons given to the client are fixed sentences: no part of a token is ever echoed or logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from routing.keys import CALLER_PATTERN, DEFAULT_TEAM, KEY_PREFIX, Caller
from serving.config import ClaimsConfig, OIDCConfig

log = logging.getLogger("sovereign.oidc")

MAX_TOKEN_CHARS = 16_384
_CALLER_RE = re.compile(CALLER_PATTERN)


# PyJWT's errors, most specific first, and the fixed sentence each gives the client (never a part of the token).
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is not for this audience"),
    (jwt.InvalidIssuerError, "the token's issuer is not trusted here"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (exp, iss, aud)"),
    (jwt.InvalidAlgorithmError, "the token's signing algorithm does not match its key"),
    (jwt.InvalidSignatureError, "the token's signature is invalid"),
    (jwt.PyJWTError, "the token is invalid"),
)


class TokenRefused(Exception):
    """The token is not valid here (401). ``reason`` is a fixed sentence, safe to return to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenNotMapped(Exception):
    """A valid token that no configured rule admits (403)."""


def looks_like_jwt(token: str) -> bool:
    """A compact JWS (three base64url parts) and not one of our API keys."""
    return token.count(".") == 2 and not token.startswith(KEY_PREFIX)


class _JWKSFile:
    """The keys of a JWKS file, re-read when its inode, mtime or size changes (checked at most once a second)."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self._path, self._clock = path, clock
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str | None, PyJWK] = {}
        self._next_check = 0.0
        self._refresh()

    def _refresh(self) -> None:
        try:
            st = self._path.stat()
        except OSError as exc:
            log.error("JWKS file %s cannot be read; tokens are refused: %s", self._path, exc.strerror)
            self._stamp, self._keys = None, {}
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            self._keys = parse_jwks(json.loads(self._path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.error("JWKS file %s is not a usable key set; tokens are refused: %s", self._path, type(exc).__name__)
            self._keys = {}
        self._stamp = stamp

    def key(self, kid: str | None) -> PyJWK | None:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + 1.0
            self._refresh()
        if kid is None:  # a token without `kid` is accepted only against a set of one key
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)


def parse_jwks(data: Any) -> dict[str | None, PyJWK]:
    """``{kid: key}`` of the asymmetric signing keys of a JWKS document (others are skipped)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str | None, PyJWK] = {}
    for item in data["keys"]:
        if not isinstance(item, dict) or item.get("kty") == "oct" or item.get("use", "sig") != "sig":
            continue
        try:
            keys[item.get("kid")] = PyJWK(item)
        except jwt.PyJWTError:
            continue  # an algorithm this build cannot verify: skipped, its tokens refused as unknown keys
    return keys


class OIDCVerifier:
    """Verifies a token and maps it to a :class:`Caller`; raises :class:`TokenRefused` or :class:`TokenNotMapped`.

    ``uses_network``: keys come from a URL, so :meth:`verify` may block on a fetch (call it off the event loop).
    """

    def __init__(self, config: OIDCConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.algorithms = list(config.algorithms)
        self.uses_network = config.jwks_url is not None
        self._file = _JWKSFile(config.jwks_file, clock) if config.jwks_file is not None else None
        self._client = (
            PyJWKClient(config.jwks_url, cache_jwk_set=True, lifespan=config.jwks_cache_s, timeout=5)
            if config.jwks_url is not None
            else None
        )

    def verify(self, token: str) -> Caller:
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused("the bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("the bearer token is not a well-formed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenRefused("the token's signing algorithm is not accepted (asymmetric algorithms only)")
        if kid is not None and not isinstance(kid, str):
            raise TokenRefused("the token's key id is malformed")
        key = self._key(kid)
        if key is None or key.key_type == "oct":
            raise TokenRefused("the token is signed by a key this server does not know")
        cfg = self.config
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self.algorithms,
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(next(reason for kind, reason in _REFUSALS if isinstance(exc, kind))) from None
        return map_claims(claims, cfg.claims)

    def _key(self, kid: str | None) -> PyJWK | None:
        if self._file is not None:
            return self._file.key(kid)
        assert self._client is not None
        try:
            if kid is None:
                keys = self._client.get_signing_keys()
                return keys[0] if len(keys) == 1 else None
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            log.error("JWKS URL cannot be fetched; tokens with keys not cached are refused")
            return None
        except jwt.PyJWTError:
            return None


def _claim_values(claims: dict[str, Any], name: str) -> list[str]:
    value = claims.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def map_claims(claims: dict[str, Any], config: ClaimsConfig) -> Caller:
    """The caller a verified token stands for. Pure: the same claims and rules always give the same caller."""
    subject = next((v for name in config.caller if (v := claims.get(name)) and isinstance(v, str)), None)
    name = f"{config.caller_prefix}{subject}" if subject else None
    if name is None or not _CALLER_RE.match(name):
        raise TokenRefused("the token does not name its subject in a usable claim")
    team = floor = ceiling = models = None
    matched = False
    for rule in config.rules:
        if rule.value not in _claim_values(claims, rule.claim):
            continue
        matched = True
        team = team if team is not None else rule.team
        floor = floor if floor is not None else rule.floor
        ceiling = ceiling if ceiling is not None else rule.ceiling
        models = models if models is not None else rule.models
    if config.require_rule and not matched:
        raise TokenNotMapped("no rule of this server admits the token's groups or roles")
    return Caller(
        name,
        floor,
        ceiling,
        None,
        team=team or config.default_team or DEFAULT_TEAM,
        models=frozenset(models) if models is not None else None,
        via="oidc",
    )
