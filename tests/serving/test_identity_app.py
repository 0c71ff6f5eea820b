"""Callers, teams and budgets through the real application (Ray Serve, vLLM, the shared budget ledger actor).

One test, so the shared app is used once here: OIDC tokens (RS256, ES256) accepted and mapped, the invalid ones
refused, an expired key and a model outside a key's list refused, a team's daily token budget shared by two callers
with exact headers, and the usage report's totals equal to the audit records'.
"""

from __future__ import annotations

import json

import httpx

from benchmarks.fake_idp import FakeIdP, new_key
from routing.audit import verify
from routing.budgets import DAY, format_reset
from routing.usage import usage_report
from tests.conftest import APP_SHARED_TOKENS_PER_DAY
from tests.support.app import RunningApp
from tests.support.audit import final_record


def _post(app: RunningApp, token: str, body: dict, timeout: float = 120, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{app.base_url}/chat/completions",
        content=json.dumps(body).encode(),
        timeout=timeout,
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json", **headers},
    )


def _body(text: str, max_tokens: int = 4, model: str = "local-only") -> dict:
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


def _estimate(body: dict) -> int:
    return -(-len(json.dumps(body).encode()) // 4)


def test_identity_budgets_and_usage_through_the_app(app: RunningApp) -> None:
    idp: FakeIdP = app.extra["idp"]
    # The engine's first request compiles its kernels (minutes on a busy host): warm it before timing anything.
    assert _post(app, app.keys["tester"], _body("warm up", 1), timeout=900).status_code == 200

    # OIDC: accepted and mapped (team from the group, floor from the role), in both algorithms
    for alg, roles, level in (("RS256", [], "OFFICIAL"), ("ES256", ["Sovereign.Secret"], "SECRET")):
        token = idp.token(alg, sub=f"app-{alg}", oid=f"app-{alg}", groups=["sg-app-users"], roles=roles)
        ok = _post(app, token, _body("hello"))
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-sovereign-classification"] == level and ok.headers["x-sovereign-backend"] == "local"
        record = final_record(app.audit_path, ok.headers["x-request-id"])
        assert record["caller"] == f"oidc:app-{alg}" and record["team"] == "app-oidc"
        assert _post(app, token, _body("hi", model="commercial-only")).status_code == 404  # not in its models

    # OIDC: each invalid token is a 401 in the OpenAI envelope, with no part of the token echoed
    claims = idp.claims(groups=["sg-app-users"])
    invalid = {
        "expired": idp.token("RS256", groups=["sg-app-users"], exp=claims["iat"] - 120),
        "not_yet_valid": idp.token("ES256", groups=["sg-app-users"], nbf=claims["iat"] + 600),
        "wrong_audience": idp.token("RS256", groups=["sg-app-users"], aud="api://other"),
        "wrong_issuer": idp.token("RS256", groups=["sg-app-users"], iss="https://other.example/"),
        "unknown_key": idp.token(key=new_key("ES256", "not-trusted"), groups=["sg-app-users"]),
        "alg_none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + idp.token("RS256").split(".")[1] + ".",
    }
    for case, token in invalid.items():
        refused = _post(app, token, _body("hello"))
        assert refused.status_code == 401, case
        assert refused.json()["error"]["type"] == "authentication_error", case
        assert token.split(".")[1] not in refused.text, case
    unmapped = _post(app, idp.token("RS256", groups=["sg-nobody"]), _body("hello"))
    assert unmapped.status_code == 403

    # API keys: expired, and a model outside the key's list
    expired = _post(app, app.keys["expired-key"], _body("hello"))
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "expired_api_key"
    outside = _post(app, app.keys["local-models-only"], _body("hello", model="default"))
    assert outside.status_code == 404
    assert outside.json()["error"]["message"] == "the model does not exist or you do not have access to it"
    assert _post(app, app.keys["local-models-only"], _body("hello")).status_code == 200

    # A team's daily token budget, shared by two callers through the shared (Ray actor) ledger; exact headers
    first = _post(app, app.keys["team-a1"], body := _body("one two three"))
    assert first.status_code == 200, first.text
    used_before = APP_SHARED_TOKENS_PER_DAY - int(first.headers["x-ratelimit-remaining-tokens"]) - _estimate(body)
    assert used_before == 0  # nobody else is in this team
    assert first.headers["x-ratelimit-limit-tokens"] == str(APP_SHARED_TOKENS_PER_DAY)
    assert first.headers["x-ratelimit-reset-tokens"] in {format_reset(s) for s in range(1, DAY + 1)}
    used = first.json()["usage"]["total_tokens"]
    second = _post(app, app.keys["team-a2"], body := _body("four five"))
    assert second.status_code == 200
    assert second.headers["x-ratelimit-remaining-tokens"] == str(APP_SHARED_TOKENS_PER_DAY - used - _estimate(body))
    used += second.json()["usage"]["total_tokens"]
    big = _body("x" * (4 * (APP_SHARED_TOKENS_PER_DAY - used) + 8))
    over = _post(app, app.keys["team-a1"], big)
    assert over.status_code == 429 and over.json()["error"]["type"] == "rate_limit_error"
    assert over.headers["x-ratelimit-limit-tokens"] == str(APP_SHARED_TOKENS_PER_DAY)
    assert over.headers["x-ratelimit-remaining-tokens"] == str(APP_SHARED_TOKENS_PER_DAY - used)
    assert int(over.headers["retry-after"]) >= 1

    # Usage: the report's totals are the audit records' totals, and the chain still verifies
    lines = app.audit_path.read_bytes().splitlines(keepends=True)
    records = [json.loads(line) for line in lines if json.loads(line)["event"] == "request"]
    report = usage_report(lines, by=("team", "model", "backend", "level", "day"))
    assert report.totals.requests == len(records)
    assert report.totals.prompt_tokens == sum(r["prompt_tokens"] or 0 for r in records)
    assert report.totals.completion_tokens == sum(r["completion_tokens"] or 0 for r in records)
    team = {row["team"]: row["total_tokens"] for row in usage_report(lines, by=("team",)).rows()}
    assert team["app-shared"] == used
    assert verify(app.audit_path).ok
