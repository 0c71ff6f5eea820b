"""Callers, teams and budgets through the in-process gateway (real HTTP, loopback fakes): OIDC tokens signed here
with keys made here (RS256, ES256), key expiry and model allow-lists, budgets with exact OpenAI headers, the usage
metric and the usage report against the audit log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.fake_idp import FakeIdP, new_key
from routing.audit import verify
from routing.budgets import DAY, MINUTE, InProcessLedger, format_reset
from routing.usage import usage_report
from tests.support.inprocess import InProcessGateway, running_gateway

M0 = 1_800_000_000.0  # the start of a minute
T0 = M0 + 10
TEAM_TOKENS = 400


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> FakeIdP:
    return FakeIdP.create(tmp_path_factory.mktemp("idp") / "jwks.json")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, idp: FakeIdP, clock: Clock) -> Iterator[InProcessGateway]:
    auth = {
        "oidc": idp.oidc_config(
            rules=[
                {"claim": "groups", "value": "sg-analysts", "team": "analysts", "models": ["default", "deadline"]},
                {"claim": "groups", "value": "sg-secret", "floor": "SECRET"},
                {
                    "claim": "roles",
                    "value": "Sovereign.Restricted",
                    "team": "restricted",
                    "ceiling": "OFFICIAL",
                    "models": ["default"],
                },
            ]
        ),
        "teams": ["listed"],
        "budgets": {
            "callers": {"rpm-two": {"requests_per_minute": 2}},
            "teams": {"shared": {"tokens_per_minute": TEAM_TOKENS, "tokens_per_day": 100_000}},
        },
    }
    keys: dict[str, dict[str, Any]] = {
        "expired": {"expires": "2020-01-01"},
        "future": {"expires": "2999-12-31"},
        "limited": {"models": ["default"]},
        "rpm-two": {},
        "alice": {"team": "shared"},
        "bob": {"team": "shared"},
        "lister": {"team": "listed"},
        "unlisted": {"team": "not-in-config"},
    }
    with running_gateway(
        tmp_path_factory.mktemp("identity"), auth=auth, ledger=InProcessLedger(clock), keys=keys
    ) as running:
        yield running


def _post(
    gw: InProcessGateway, token: str, body: dict | None = None, *, path: str = "chat/completions", **headers: str
) -> httpx.Response:
    body = body or {"model": "default", "max_tokens": 2, "messages": [{"role": "user", "content": "hello there"}]}
    return httpx.post(
        f"{gw.base_url}/{path}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json", **headers},
        timeout=30,
    )


def _records(gw: InProcessGateway) -> list[dict]:
    # A request's record is written before its response is sent (streams: before their end).
    return gw.records()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------------------------- OIDC


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_token_accepted_and_mapped(gw: InProcessGateway, idp: FakeIdP, alg: str) -> None:
    subject = f"user-{alg.lower()}"
    token = idp.token(alg, sub=subject, oid=subject, groups=["sg-analysts", "other-group"])
    response = _post(gw, token)
    assert response.status_code == 200, response.text
    assert response.headers["x-sovereign-classification"] == "OFFICIAL"
    record = next(
        r for r in _records(gw) if r["request_id"] == response.headers["x-request-id"] and r["event"] == "request"
    )
    assert record["caller"] == f"oidc:{subject}" and record["team"] == "analysts"
    # the mapped model list: a model outside it is "does not exist or you do not have access to it"
    denied = _post(gw, token, {"model": "commercial-first", "messages": [{"role": "user", "content": "hi"}]})
    assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"
    listed = httpx.get(f"{gw.base_url}/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert [m["id"] for m in listed.json()["data"]] == ["default", "deadline"]


def test_token_floor_and_ceiling(gw: InProcessGateway, idp: FakeIdP) -> None:
    raised = _post(gw, idp.token("ES256", groups=["sg-analysts", "sg-secret"]))
    assert raised.status_code == 200 and raised.headers["x-sovereign-classification"] == "SECRET"
    assert raised.headers["x-sovereign-backend"] == "uk"
    restricted = idp.token("RS256", groups=[], roles=["Sovereign.Restricted"])
    assert _post(gw, restricted).status_code == 200
    refused = _post(gw, restricted, None, **{"x-sovereign-classification": "SECRET"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "classification_not_permitted"


def test_token_without_a_mapped_group_is_not_permitted(gw: InProcessGateway, idp: FakeIdP) -> None:
    response = _post(gw, idp.token("RS256", groups=["sg-unrelated"]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "identity_not_permitted"


def _invalid_tokens(idp: FakeIdP) -> dict[str, str]:
    rsa = idp.keys["RS256"]
    stranger = new_key("RS256", "test-rs256")  # the trusted key's kid, another key
    unknown = new_key("ES256", "someone-else")
    claims = idp.claims(groups=["sg-analysts"])
    pem = rsa.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': rsa.kid}).encode())}."
        f"{_b64(json.dumps(claims).encode())}"
    )
    hs256_with_public_key = f"{signing_input}.{_b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    alg_none = (
        f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': rsa.kid}).encode())}."
        f"{_b64(json.dumps(claims).encode())}."
    )
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    return {
        "expired": idp.token("RS256", groups=["sg-analysts"], exp=claims["iat"] - 120),
        "not_yet_valid": idp.token("ES256", groups=["sg-analysts"], nbf=claims["iat"] + 600),
        "wrong_audience": idp.token("RS256", groups=["sg-analysts"], aud="api://someone-else"),
        "wrong_issuer": idp.token("ES256", groups=["sg-analysts"], iss="https://evil.example/"),
        "unknown_kid": idp.token(key=unknown, groups=["sg-analysts"]),
        "wrong_key_same_kid": idp.token(key=stranger, groups=["sg-analysts"]),
        "alg_none": alg_none,
        "hs256_with_public_key": hs256_with_public_key,
        "no_exp": jwt.encode(no_exp, rsa.private, algorithm="RS256", headers={"kid": rsa.kid}),
        "es256_header_on_rsa_key": _swap_alg(idp.token("RS256", groups=["sg-analysts"]), "ES256"),
        "tampered_claims": _tamper(idp.token("RS256", groups=["sg-analysts"])),
    }


def _swap_alg(token: str, alg: str) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=="))
    return f"{_b64(json.dumps({**decoded, 'alg': alg, 'kid': 'test-rs256'}).encode())}.{payload}.{signature}"


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return f"{header}.{_b64(json.dumps({**claims, 'groups': ['sg-analysts', 'sg-admins']}).encode())}.{signature}"


INVALID_CASES = {
    "expired": "has expired",
    "not_yet_valid": "not valid yet",
    "wrong_audience": "not for this audience",
    "wrong_issuer": "issuer is not trusted",
    "unknown_kid": "key this server does not know",
    "wrong_key_same_kid": "signature is invalid",
    "alg_none": "algorithm is not accepted",
    "hs256_with_public_key": "algorithm is not accepted",
    "no_exp": "lacks a required claim",
    "es256_header_on_rsa_key": "does not match its key",
    "tampered_claims": "signature is invalid",
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_invalid_tokens_are_401_without_echo(gw: InProcessGateway, idp: FakeIdP, case: str) -> None:
    token = _invalid_tokens(idp)[case]
    before = len(gw.uk.received) + len(gw.commercial.received)
    response = _post(gw, token)
    assert response.status_code == 401, (case, response.text)
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and error["code"] == "invalid_token"
    assert INVALID_CASES[case] in error["message"]
    for part in token.split("."):
        if len(part) > 8:
            assert part not in response.text
    assert len(gw.uk.received) + len(gw.commercial.received) == before
    assert token.split(".")[1] not in gw.audit_path.read_text()


# --------------------------------------------------------------------------------------------- API keys


def test_expired_key_refused_and_unexpired_served(gw: InProcessGateway) -> None:
    response = _post(gw, gw.keys["expired"])
    assert response.status_code == 401
    assert response.json()["error"] == {
        "message": "the API key has expired",
        "type": "authentication_error",
        "param": None,
        "code": "expired_api_key",
    }
    assert _post(gw, gw.keys["future"]).status_code == 200


def test_key_model_allow_list(gw: InProcessGateway) -> None:
    key = gw.keys["limited"]
    assert _post(gw, key).status_code == 200
    response = _post(gw, key, {"model": "commercial-first", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "the model does not exist or you do not have access to it"
    listed = httpx.get(f"{gw.base_url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert [m["id"] for m in listed.json()["data"]] == ["default"]


# --------------------------------------------------------------------------------------------- budgets


def test_request_budget_headers_exact(gw: InProcessGateway, clock: Clock) -> None:
    clock.now = T0
    key = gw.keys["rpm-two"]
    reset = format_reset(MINUTE - T0 % MINUTE)
    assert reset == "50s"
    for remaining in (1, 0):
        ok = _post(gw, key)
        assert ok.status_code == 200
        assert {k: v for k, v in ok.headers.items() if k.startswith("x-ratelimit")} == {
            "x-ratelimit-limit-requests": "2",
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": "50s",
        }
    sent = len(gw.uk.received)
    refused = _post(gw, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "50s"
    assert refused.headers["retry-after"] == "50"
    assert len(gw.uk.received) == sent  # refused before any backend
    clock.now = T0 + 50  # the next minute
    assert _post(gw, key).headers["x-ratelimit-remaining-requests"] == "1"


def _body(words: int, max_tokens: int, stream: bool = False) -> dict:
    body = {
        "model": "default",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": " ".join(["word"] * words)}],
    }
    if stream:
        body |= {"stream": True}
    return body


def _size(body: dict) -> int:
    return -(-len(json.dumps(body).encode()) // 4)


def _token_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit")}


def test_team_token_budget_shared_by_two_callers(gw: InProcessGateway, clock: Clock) -> None:
    clock.now = M0 + 3 * MINUTE + 15  # a fresh minute, 45 s left in it
    day_left = DAY - clock.now % DAY
    used = 0
    alice = _post(gw, gw.keys["alice"], first := _body(10, 5))
    assert alice.status_code == 200
    assert _token_headers(alice) == {
        "x-ratelimit-limit-tokens": str(TEAM_TOKENS),
        "x-ratelimit-remaining-tokens": str(TEAM_TOKENS - _size(first)),
        "x-ratelimit-reset-tokens": "45s",
    }
    used += alice.json()["usage"]["total_tokens"]
    assert used == 15  # the fake counts 10 words and 5 completion tokens
    # bob, same team: sees alice's counted usage (not her estimate); his stream is counted when it ends
    with httpx.stream(
        "POST",
        f"{gw.base_url}/chat/completions",
        json=(streamed := _body(20, 7, stream=True)),
        headers={"Authorization": f"Bearer {gw.keys['bob']}"},
        timeout=30,
    ) as bob:
        assert bob.status_code == 200
        estimate = -(-len(bob.request.content) // 4)
        assert bob.headers["x-ratelimit-remaining-tokens"] == str(TEAM_TOKENS - used - estimate)
        assert "".join(bob.iter_text()).rstrip().endswith("[DONE]")
    used += 20 + 7
    assert streamed["stream"]
    third = _post(gw, gw.keys["alice"], body := _body(1, 1))
    assert third.headers["x-ratelimit-remaining-tokens"] == str(TEAM_TOKENS - used - _size(body))
    used += 2
    # a prompt whose estimate alone would exceed what is left is refused before any backend
    sent = len(gw.uk.received)
    big = _body(TEAM_TOKENS, 1)
    refused = _post(gw, gw.keys["bob"], big)
    assert refused.status_code == 429
    assert _token_headers(refused) == {
        "x-ratelimit-limit-tokens": str(TEAM_TOKENS),
        "x-ratelimit-remaining-tokens": str(TEAM_TOKENS - used),
        "x-ratelimit-reset-tokens": "45s",
    }
    assert refused.headers["retry-after"] == "45"
    assert len(gw.uk.received) == sent
    assert day_left > MINUTE  # the day budget (100k) is not the one that binds here


# --------------------------------------------------------------------------------------------- usage


def _token_samples(gw: InProcessGateway) -> dict[tuple[str, ...], float]:
    text = httpx.get(gw.metrics_url, timeout=10).text
    return {
        (s.labels["team"], s.labels["model"], s.labels["backend"], s.labels["level"], s.labels["type"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "sovereign_tokens"
        for s in family.samples
        if s.name == "sovereign_tokens_total"
    }


def test_token_metric_labels_are_configured_names(gw: InProcessGateway) -> None:
    assert _post(gw, gw.keys["lister"], _body(3, 2)).status_code == 200
    assert _post(gw, gw.keys["unlisted"], _body(3, 2)).status_code == 200
    samples = _token_samples(gw)
    assert samples[("listed", "default", "uk", "OFFICIAL", "prompt")] >= 3
    assert samples[("other", "default", "uk", "OFFICIAL", "completion")] >= 2
    assert not any(key[0] == "not-in-config" for key in samples)


def test_usage_report_totals_equal_the_audit_records(gw: InProcessGateway) -> None:
    assert _post(gw, gw.keys["lister"], _body(4, 3)).status_code == 200
    records = [r for r in _records(gw) if r["event"] == "request"]
    lines = gw.audit_path.read_bytes().splitlines(keepends=True)
    report = usage_report(lines, by=("team", "model", "backend", "level", "day"))
    assert report.totals.requests == len(records)
    assert report.totals.prompt_tokens == sum(r["prompt_tokens"] or 0 for r in records)
    assert report.totals.completion_tokens == sum(r["completion_tokens"] or 0 for r in records)
    by_team: dict[str, int] = {}
    for r in records:
        by_team[r["team"] or "_none"] = (
            by_team.get(r["team"] or "_none", 0) + (r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0)
        )
    grouped = usage_report(lines, by=("team",))
    assert {row["team"]: row["total_tokens"] for row in grouped.rows()} == by_team
    assert verify(gw.audit_path).ok


def test_key_files_without_the_new_fields_still_load(tmp_path: Path) -> None:
    from routing.keys import DEFAULT_TEAM, KeyStore, hash_key

    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            [
                {
                    "caller": "old",
                    "key_sha256": hash_key("sk-sov-old"),
                    "floor": None,
                    "ceiling": None,
                    "rate_per_minute": None,
                    "created": "2026-01-01T00:00:00Z",
                }
            ]
        )
    )
    caller = KeyStore.load(path).authenticate("Bearer sk-sov-old")
    assert caller is not None and caller.team == DEFAULT_TEAM and caller.models is None and caller.expires is None


# --------------------------------------------------------------------------------------------- configuration, CLI


@pytest.mark.parametrize(
    ("oidc", "problem"),
    [
        ({"algorithms": ["HS256"]}, "asymmetric algorithms only"),
        ({"algorithms": ["none"]}, "asymmetric algorithms only"),
        ({"jwks_url": "https://idp.example/keys"}, "exactly one of jwks_file and jwks_url"),
        ({"claims": {"rules": [{"claim": "groups", "value": "g", "models": ["nope"]}]}}, "unknown model names"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_oidc_config_is_strict(tmp_path: Path, oidc: dict, problem: str) -> None:
    from serving.config import ConfigError, load_settings
    from tests.support.inprocess import gateway_config

    config = gateway_config(tmp_path, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    config["auth"]["oidc"] = {
        "issuer": "https://idp.example",
        "audience": "api://x",
        "jwks_file": str(tmp_path / "jwks.json"),
        **oidc,
    }
    with pytest.raises(ConfigError, match=problem):
        load_settings(data=config)


def test_keys_cli_team_expiry_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from routing.keys import KeyStore
    from routing.keys_cli import main

    path = tmp_path / "keys.json"
    assert (
        main(
            [
                "create",
                "--caller",
                "svc",
                "--team",
                "finance",
                "--expires",
                "2031-03-31",
                "--models",
                "default,embeddings",
                "--keys-file",
                str(path),
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.strip().splitlines()[-1]
    entry = json.loads(path.read_text())[0]
    assert entry["team"] == "finance" and entry["expires"] == "2031-04-01T00:00:00Z"
    assert entry["models"] == ["default", "embeddings"] and key not in path.read_text()
    caller = KeyStore.load(path).authenticate(f"Bearer {key}")
    assert caller is not None and caller.models == {"default", "embeddings"} and not caller.expired()
    assert main(["list", "--keys-file", str(path)]) == 0
    assert "finance" in capsys.readouterr().out
    assert main(["create", "--caller", "x", "--expires", "soon", "--keys-file", str(path)]) == 1


def test_jwks_url_is_fetched_once_and_cached(tmp_path: Path) -> None:
    """jwks_url through PyJWKClient, from a loopback server: keys are fetched once, then served from the cache."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from serving.config import OIDCConfig
    from serving.oidc import OIDCVerifier, TokenRefused

    idp = FakeIdP.create(tmp_path / "jwks.json")
    fetches = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(self.path)
            body = idp.jwks_path.read_bytes()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = {
            **idp.oidc_config(rules=[{"claim": "groups", "value": "g", "team": "t"}]),
            "jwks_file": None,
            "jwks_url": f"http://127.0.0.1:{server.server_port}/keys",
        }
        verifier = OIDCVerifier(OIDCConfig(**config))
        assert verifier.uses_network
        for alg in ("RS256", "ES256", "RS256"):
            assert verifier.verify(idp.token(alg, groups=["g"])).team == "t"
        assert len(fetches) == 1
        with pytest.raises(TokenRefused, match="key this server does not know"):
            verifier.verify(idp.token(key=new_key("ES256", "rotated-away"), groups=["g"]))
    finally:
        server.shutdown()


def test_jwks_file_rotation_is_picked_up(tmp_path: Path) -> None:
    import os

    from serving.config import OIDCConfig
    from serving.oidc import OIDCVerifier, TokenRefused

    idp = FakeIdP.create(tmp_path / "jwks.json", algs=("ES256",))
    now = [0.0]
    verifier = OIDCVerifier(
        OIDCConfig(**idp.oidc_config(rules=[{"claim": "groups", "value": "g"}])), clock=lambda: now[0]
    )
    old = idp.token("ES256", groups=["g"])
    assert verifier.verify(old).name.startswith("oidc:")
    idp.keys["ES256"] = new_key("ES256", "test-es256-2")  # the provider rotates its key
    idp.write_jwks()
    os.utime(idp.jwks_path, ns=(1, 1))  # a new stamp even within the file system's time resolution
    now[0] = 2.0
    assert verifier.verify(idp.token("ES256", groups=["g"])) is not None
    with pytest.raises(TokenRefused):
        verifier.verify(old)
