"""``sovereign bench overhead``: what the gateway adds in front of a fast fake upstream with no model.

The same load goes to the fake directly and through the gateway (classification and audit on, the fake
configured as a sovereign OpenAI-compatible backend). Added latency at concurrency 1 is the difference of the
two end-to-end latency percentiles; the highest sustained rate is the closed-loop request throughput at a
high concurrency with no failures. The direct figures double as the proof that the load generator is not the
bottleneck: it drives the no-op fake at several times the gateway's rate.

With ``router_replicas`` (e.g. ``(1, 2)``), gateways with that many router replicas (``server.ingress_replicas``;
the per-caller rate shared between them through the ledger's leases) are measured the same way one after another,
and shown side by side with the one-replica gateway.

With ``jwt``, the same gateway is also driven with an OIDC bearer token (RS256, verified against a JWKS file,
mapped by one claim rule) instead of an API key, in the same run and right after the key's runs, so that the two
columns differ only in how the caller authenticates.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.compare import loadavg, machine_info, measure
from benchmarks.datasets import random_prompts
from benchmarks.targets import Target, start_fake, start_gateway
from serving.config import OpenAIBackendConfig

FAKE_KEY_ENV = "SOVEREIGN_BENCH_FAKE_KEY"


def upstream_backend(base_url: str, http_client: str | None = None) -> dict[str, Any]:
    """The fake as a sovereign OpenAI-compatible backend, so every level may route to it; ``http_client``: the
    SDK transport (``OpenAIBackendConfig.http_client``), the server's default when None."""
    return {
        "name": "upstream",
        "kind": "openai",
        "sovereign": True,
        "max_classification": "SECRET",
        "base_url": base_url,
        "api_key_env": FAKE_KEY_ENV,
        "model": "fake",
        **({"http_client": http_client} if http_client else {}),
    }


def overhead_figures(direct_c1: dict, gateway_c1: dict, direct_max: dict, gateway_max: dict) -> dict[str, Any]:
    """The headline figures from the four runs (ms and req/s)."""
    return {
        "added_p50_ms_c1": gateway_c1["median_e2el_ms"] - direct_c1["median_e2el_ms"],
        "added_p99_ms_c1": gateway_c1["p99_e2el_ms"] - direct_c1["p99_e2el_ms"],
        "added_p50_ttft_ms_c1": gateway_c1["median_ttft_ms"] - direct_c1["median_ttft_ms"],
        "gateway_rps": gateway_max["request_throughput"] if not gateway_max["failed"] else None,
        "direct_rps": direct_max["request_throughput"],
        "gateway_rps_with_failures": gateway_max["request_throughput"],
        "gateway_failed": gateway_max["failed"],
    }


def run_overhead(
    *,
    requests_c1: int = 300,
    requests_max: int = 2000,
    max_concurrency: int = 64,
    input_len: int = 64,
    output_len: int = 8,
    ready_timeout_s: float = 300.0,
    http_client: str | None = None,
    jwt: bool = False,
    router_replicas: tuple[int, ...] = (),
    workdir: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    base = Path(workdir or tempfile.mkdtemp(prefix="sovereign-overhead-"))
    idp, auth = None, None
    if jwt:
        from benchmarks.fake_idp import FakeIdP

        idp = FakeIdP.create(base / "idp" / "jwks.json", algs=("RS256",))
        # The token's caller has no key of its own to carry a rate: lift the default per-caller rate as the bench's
        # key does (benchmarks/targets.py: create_api_key), or the sustained-rate run measures the rate limiter.
        auth = {
            "oidc": idp.oidc_config(rules=[{"claim": "groups", "value": "bench", "team": "bench"}]),
            "default_rate_per_minute": 100_000_000,
        }
    c1_prompts = random_prompts(requests_c1, input_len, output_len, seed=1)
    max_prompts = random_prompts(requests_max, input_len, output_len, seed=2)
    runs: dict[str, dict[str, Any]] = {}
    conditions: dict[str, Any] = {"loadavg_before": loadavg()}
    fake = start_fake(base / "fake")
    try:
        log(f"[direct] fake upstream at {fake.base_url}: concurrency 1, then {max_concurrency}")
        runs["direct_c1"] = measure(fake, c1_prompts, 1, 20, ignore_eos=False, progress=progress)
        runs["direct_max"] = measure(fake, max_prompts, max_concurrency, max_concurrency, ignore_eos=False,
                                     progress=progress)  # fmt: skip
        log("[gateway] starting in front of the fake (classification and audit on)")
        gateway = start_gateway(
            base / "gateway",
            [upstream_backend(fake.base_url, http_client)],
            ["upstream"],
            ready_timeout_s,
            env={FAKE_KEY_ENV: "fake-upstream-key"},
            auth=auth,
        )
        try:
            runs["gateway_c1"] = measure(gateway, c1_prompts, 1, 20, ignore_eos=False, progress=progress)
            runs["gateway_max"] = measure(gateway, max_prompts, max_concurrency, max_concurrency, ignore_eos=False,
                                          progress=progress)  # fmt: skip
            if idp is not None:
                token = idp.token("RS256", groups=["bench"], lifetime_s=86_400)
                log("[gateway, OIDC token] the same gateway, authenticated by an RS256 JWT instead of the API key")
                as_jwt = Target(
                    "gateway-jwt", gateway.base_url, gateway.model, None, gateway.log_path, token, dict(gateway.headers)
                )
                runs["gateway_jwt_c1"] = measure(as_jwt, c1_prompts, 1, 20, ignore_eos=False, progress=progress)
                runs["gateway_jwt_max"] = measure(
                    as_jwt, max_prompts, max_concurrency, max_concurrency, ignore_eos=False, progress=progress
                )
        finally:
            gateway.stop()
        for replicas in sorted(set(router_replicas) - {1}):
            log(f"[gateway, {replicas} router replicas] the same gateway with server.ingress_replicas: {replicas}")
            more = start_gateway(
                base / f"gateway-{replicas}",
                [upstream_backend(fake.base_url, http_client)],
                ["upstream"],
                ready_timeout_s,
                env={FAKE_KEY_ENV: "fake-upstream-key"},
                auth=auth,
                server={"ingress_replicas": replicas},
                name=f"gateway-{replicas}",
            )
            try:
                runs[f"gateway_r{replicas}_c1"] = measure(more, c1_prompts, 1, 20, ignore_eos=False, progress=progress)
                runs[f"gateway_r{replicas}_max"] = measure(
                    more, max_prompts, max_concurrency, max_concurrency, ignore_eos=False, progress=progress
                )
            finally:
                more.stop()
    finally:
        fake.stop()
    conditions["loadavg_after"] = loadavg()
    doc = overhead_figures(runs["direct_c1"], runs["gateway_c1"], runs["direct_max"], runs["gateway_max"])
    if "gateway_jwt_c1" in runs:
        doc["jwt"] = jwt_figures(runs)
    if router_replicas:
        doc["router_replicas"] = replica_figures(runs)
    return doc | {
        "config": {
            "requests_c1": requests_c1,
            "requests_max": requests_max,
            "max_concurrency": max_concurrency,
            "input_len": input_len,
            "output_len": output_len,
            "streaming": True,
            "http_client": http_client or OpenAIBackendConfig.model_fields["http_client"].default,
            "jwt": "RS256 (2048-bit key), JWKS file, one claim rule" if jwt else None,
            "note": "added = gateway percentile minus direct percentile of end-to-end latency; both sides, the "
            "client and the fake share this machine",
        },
        "machine": machine_info(),
        "conditions": conditions,
        "runs": runs,
    }


def replica_figures(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per number of router replicas (as a string key): p50/p99 at concurrency 1 and the sustained rate."""
    found = {"1": (runs["gateway_c1"], runs["gateway_max"])}
    for name in runs:
        if name.startswith("gateway_r") and name.endswith("_c1"):
            n = name.removeprefix("gateway_r").removesuffix("_c1")
            found[n] = (runs[name], runs[f"gateway_r{n}_max"])
    return {
        n: {
            "p50_ms_c1": c1["median_e2el_ms"],
            "p99_ms_c1": c1["p99_e2el_ms"],
            "rps": mx["request_throughput"],
            "failed": mx["failed"],
        }
        for n, (c1, mx) in sorted(found.items(), key=lambda kv: int(kv[0]))
    }


def jwt_figures(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """API key and OIDC token side by side on the same gateway (ms and req/s); ``jwt_cost_*``: token minus key."""
    key_c1, jwt_c1, key_max, jwt_max = (
        runs[k] for k in ("gateway_c1", "gateway_jwt_c1", "gateway_max", "gateway_jwt_max")
    )
    return {
        "key_p50_ms_c1": key_c1["median_e2el_ms"],
        "jwt_p50_ms_c1": jwt_c1["median_e2el_ms"],
        "key_p99_ms_c1": key_c1["p99_e2el_ms"],
        "jwt_p99_ms_c1": jwt_c1["p99_e2el_ms"],
        "jwt_cost_p50_ms_c1": jwt_c1["median_e2el_ms"] - key_c1["median_e2el_ms"],
        "jwt_cost_p99_ms_c1": jwt_c1["p99_e2el_ms"] - key_c1["p99_e2el_ms"],
        "key_rps": key_max["request_throughput"],
        "jwt_rps": jwt_max["request_throughput"],
        "key_failed": key_max["failed"],
        "jwt_failed": jwt_max["failed"],
    }


def format_overhead(doc: dict[str, Any]) -> str:
    def fmt(value: Any, unit: str) -> str:
        return "n/a" if value is None else f"{value:.2f} {unit}"

    lines = [
        f"added latency p50 at concurrency 1:  {fmt(doc['added_p50_ms_c1'], 'ms')}",
        f"added latency p99 at concurrency 1:  {fmt(doc['added_p99_ms_c1'], 'ms')}",
        f"gateway sustained rate:             {fmt(doc['gateway_rps'], 'req/s')}",
        f"direct (fake only) rate:            {fmt(doc['direct_rps'], 'req/s')}",
    ]
    if doc.get("jwt"):
        j = doc["jwt"]
        lines += [
            "",
            f"{'same gateway, authenticated by':<34} {'API key':>12} {'OIDC JWT':>12} {'JWT - key':>12}",
            f"{'p50 at concurrency 1':<34} {fmt(j['key_p50_ms_c1'], 'ms'):>12} {fmt(j['jwt_p50_ms_c1'], 'ms'):>12} "
            f"{fmt(j['jwt_cost_p50_ms_c1'], 'ms'):>12}",
            f"{'p99 at concurrency 1':<34} {fmt(j['key_p99_ms_c1'], 'ms'):>12} {fmt(j['jwt_p99_ms_c1'], 'ms'):>12} "
            f"{fmt(j['jwt_cost_p99_ms_c1'], 'ms'):>12}",
            f"{'sustained rate (failures)':<34} {fmt(j['key_rps'], 'r/s'):>8} ({j['key_failed']}) "
            f"{fmt(j['jwt_rps'], 'r/s'):>8} ({j['jwt_failed']})",
        ]
    if doc.get("router_replicas"):
        lines += ["", f"{'router replicas':<34} {'p50 c1':>10} {'p99 c1':>10} {'sustained':>12} {'failed':>7}"]
        for n, r in doc["router_replicas"].items():
            lines.append(
                f"{n:<34} {fmt(r['p50_ms_c1'], 'ms'):>10} {fmt(r['p99_ms_c1'], 'ms'):>10} "
                f"{fmt(r['rps'], 'r/s'):>12} {r['failed']:>7}"
            )
    return "\n".join(lines)
