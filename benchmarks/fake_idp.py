"""A stand-in for the department's identity provider: signing keys made here (RS256, ES256), a JWKS file, tokens.

Used by the tests (OIDC bearer tokens through the gateway) and by ``sovereign bench overhead`` (what a JWT costs per
request beside an API key). Nothing leaves this process: keys are generated in memory and the JWKS is a file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://login.example.gov.uk/sovereign-test/v2.0"
AUDIENCE = "api://sovereign-inference"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.algorithms.get_default_algorithms()[self.alg]
        data = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_key(alg: str, kid: str) -> SigningKey:
    if alg.startswith(("RS", "PS")):
        return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if alg == "ES256":
        return SigningKey(kid, alg, ec.generate_private_key(ec.SECP256R1()))
    raise ValueError(f"no test key for {alg}")


@dataclass
class FakeIdP:
    """Keys the gateway trusts (written to ``jwks_path``), and a way to mint tokens with them or with others."""

    jwks_path: Path
    issuer: str = ISSUER
    audience: str = AUDIENCE
    keys: dict[str, SigningKey] = field(default_factory=dict)

    @classmethod
    def create(cls, jwks_path: Path, algs: tuple[str, ...] = ("RS256", "ES256")) -> FakeIdP:
        idp = cls(jwks_path)
        for alg in algs:
            idp.keys[alg] = new_key(alg, f"test-{alg.lower()}")
        idp.write_jwks()
        return idp

    def write_jwks(self) -> None:
        self.jwks_path.parent.mkdir(parents=True, exist_ok=True)
        self.jwks_path.write_text(json.dumps({"keys": [k.jwk() for k in self.keys.values()]}))

    def claims(
        self,
        *,
        subject: str = "00000000-0000-0000-0000-000000000001",
        groups: list[str] | None = None,
        lifetime_s: float = 3600,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "oid": subject,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime_s),
            "groups": groups or [],
            **extra,
        }

    def token(
        self, alg: str = "RS256", *, key: SigningKey | None = None, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A token signed with this IdP's key for ``alg`` (or ``key``); ``claims`` override :meth:`claims`'s."""
        signing = key or self.keys[alg]
        body = {**self.claims(), **claims}
        return jwt.encode(body, signing.private, algorithm=signing.alg, headers={"kid": signing.kid, **(headers or {})})

    def oidc_config(self, **claims: Any) -> dict[str, Any]:
        """The gateway's ``auth.oidc`` section for this IdP; ``claims``: its ``claims`` section."""
        return {
            "issuer": self.issuer,
            "audience": self.audience,
            "jwks_file": str(self.jwks_path),
            "algorithms": sorted({k.alg for k in self.keys.values()}),
            "claims": claims,
        }
