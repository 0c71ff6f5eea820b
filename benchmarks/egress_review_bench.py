"""``sovereign bench egress-review``: what the egress review adds to a request on its way to a commercial backend.

Two measurements over ``--requests`` different chat requests of about ``--tokens`` MiniLM tokens (2,000 by default:
a system prompt and a long user message of benign held-out texts, everyday work and documentation):

- the review alone: ``EgressReviewer.review_request`` on each body (p50, p99), with its word cache warm as in a
  running server, and again with the cache emptied before every request (every word tokenized anew);
- end to end, side by side, with the bodies the review lets through (the share it flags is reported: on long
  documents one flagged window is enough): two gateways in this process, identical but for
  ``egress_review.enabled``, each in front of the same loopback fake of OpenAI (the only backend, non-sovereign),
  driven through their ASGI apps one request at a time, alternating between them so that load on the machine hits
  both alike. The added latency is the difference of their percentiles. It includes handing the review to its
  thread and back.

Also the full transformer for comparison (``--transformer``): MiniLM itself over the same tokens in 256-token
chunks, the way the review would run if it used the model directly.

OUT (``--json``) gets every figure; they are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_MODEL = Path("var/models/minilm")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_percentile(ms, 50), 3),
        "p99_ms": round(_percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "n": len(ms),
    }


def chat_bodies(tokenizer: Any, tokens: int, n: int, seed: int = 19) -> list[dict[str, Any]]:
    """``n`` different chat requests of about ``tokens`` tokens each, of benign held-out text from
    ``models/egress_data`` (everyday work and reference text: documentation and code), a different draw for each, so
    the review meets new words as it would in real traffic."""
    import random

    from models.egress_data import handwritten

    rng = random.Random(seed)
    pool = [
        i.text or ""
        for i in handwritten()
        if i.held_out and not i.sensitive and i.categories[0] in ("general", "reference")
    ]
    lengths = {t: len(tokenizer.encode(t, add_special_tokens=False).ids) for t in pool}
    bodies = []
    for k in range(n):
        parts: list[str] = [f"Reference {k}."]
        count = 0
        while count < tokens:
            text = rng.choice(pool)
            parts.append(text)
            count += lengths[text]
        bodies.append(
            {
                "model": "bench",
                "max_tokens": 8,
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant for staff in a government department."},
                    {
                        "role": "user",
                        "content": "Summarise these notes for the weekly team brief:\n\n" + "\n\n".join(parts),
                    },
                ],
            }
        )
    return bodies


def time_review(reviewer: Any, bodies: list[dict[str, Any]], *, cold: bool) -> dict[str, Any]:
    """The review alone over ``bodies``; ``cold``: its word cache emptied before each (every word tokenized anew)."""
    for body in bodies[:20]:
        reviewer.review_request(body, deadline_s=10)
    ms, flagged = [], 0
    for body in bodies:
        if cold:
            reviewer._words.clear()
        started = time.perf_counter()
        review = reviewer.review_request(body, deadline_s=10)
        ms.append((time.perf_counter() - started) * 1000)
        flagged += review.sensitive
    return {**_summary(ms), "flagged": flagged}


def time_transformer(model_dir: Path, body: dict[str, Any], requests: int) -> dict[str, Any]:
    """MiniLM itself over the request's tokens in chunks of 256 (one batch), as a direct use of the model would."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from routing.egress_review import request_texts

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    ids = tokenizer("\n".join(request_texts(body)), add_special_tokens=False)["input_ids"]
    chunks = [[101, *ids[i : i + 254], 102] for i in range(0, len(ids), 254)]
    width = max(map(len, chunks))
    batch = torch.tensor([c + [0] * (width - len(c)) for c in chunks])
    mask = (batch != 0).long()
    ms = []
    with torch.inference_mode():
        model(input_ids=batch, attention_mask=mask)
        for _ in range(requests):
            started = time.perf_counter()
            model(input_ids=batch, attention_mask=mask)
            ms.append((time.perf_counter() - started) * 1000)
    return {**_summary(ms), "tokens": len(ids), "chunks": len(chunks), "torch_threads": torch.get_num_threads()}


async def _end_to_end(model_dir: Path, bodies: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    import httpx

    from benchmarks.fake_openai import FakeOpenAIServer
    from routing.audit import AuditLog
    from routing.keys import KeyStore, create_key
    from serving.api import create_app
    from serving.backends.openai_http import OpenAIBackend
    from serving.config import OpenAIBackendConfig, load_settings
    from serving.gateway import Gateway

    os.environ.setdefault("SOVEREIGN_BENCH_FAKE_KEY", "sk-bench")
    with FakeOpenAIServer(record=False) as fake:
        clients, gateways = {}, []
        key = create_key(workdir / "keys.json", "bench")
        for arm, enabled in (("review_on", True), ("review_off", False)):
            settings = load_settings(
                data={
                    "audit": {"path": str(workdir / f"audit-{arm}.jsonl")},
                    "auth": {"keys_file": str(workdir / "keys.json"), "default_rate_per_minute": 10**9},
                    "backends": [
                        {
                            "name": "commercial",
                            "kind": "openai",
                            "sovereign": False,
                            "max_classification": "OFFICIAL",
                            "base_url": fake.base_url,
                            "api_key_env": "SOVEREIGN_BENCH_FAKE_KEY",
                            "model": "fake",
                        }
                    ],
                    "models": [{"name": "bench", "route": ["commercial"]}],
                    "egress_review": {"enabled": enabled, "model": str(model_dir)},
                }
            )
            backends = {b.name: OpenAIBackend(b) for b in settings.backends if isinstance(b, OpenAIBackendConfig)}
            gateway = Gateway(
                settings, backends, audit=AuditLog(settings.audit.path), keys=KeyStore.load(workdir / "keys.json")
            )
            gateways.append(gateway)
            clients[arm] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(gateway)),
                base_url="http://bench",
                headers={"authorization": f"Bearer {key}"},
            )
        ms: dict[str, list[float]] = {arm: [] for arm in clients}
        backend: dict[str, set[str]] = {arm: set() for arm in clients}
        try:
            for n, body in enumerate([*bodies[:20], *bodies]):
                for arm in ("review_on", "review_off") if n % 2 else ("review_off", "review_on"):
                    started = time.perf_counter()
                    response = await clients[arm].post("/v1/chat/completions", json=body)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise RuntimeError(
                            f"{arm}: HTTP {response.status_code} (a flagged body stays local: "
                            "this route has no local backend)"
                        )
                    backend[arm].add(response.headers["x-sovereign-backend"])
                    if n >= 20:  # the first rounds warm up connections and caches
                        ms[arm].append(elapsed)
        finally:
            for client in clients.values():
                await client.aclose()
            for gateway in gateways:
                await gateway.close()
    on, off = _summary(ms["review_on"]), _summary(ms["review_off"])
    return {
        "review_on": on,
        "review_off": off,
        "backends": {k: sorted(v) for k, v in backend.items()},
        "added_p50_ms": round(on["p50_ms"] - off["p50_ms"], 3),
        "added_p99_ms": round(on["p99_ms"] - off["p99_ms"], 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign bench egress-review", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="MiniLM folder (default %(default)s)")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--transformer", action="store_true", help="also time the full MiniLM over the same tokens")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/egress-review/bench.json"))
    args = parser.parse_args(argv)

    from benchmarks.compare import loadavg, machine_info
    from routing.egress_review import DEFAULT_ARTEFACT, EgressReviewer

    reviewer = EgressReviewer.load(DEFAULT_ARTEFACT, args.model)
    if reviewer.meta.get("contextual"):
        import torch

        torch.set_num_threads(1)  # the second stage's transformer, as the router runs it (serving/egress_gate.py)
    bodies = chat_bodies(reviewer._tokenizer, args.tokens, args.requests)
    tokens = [
        sum(len(reviewer._tokenizer.encode(m["content"], add_special_tokens=False).ids) for m in b["messages"])
        for b in bodies
    ]
    doc: dict[str, Any] = {
        "machine": machine_info(),
        "loadavg_before": loadavg(),
        "request_tokens": {"min": min(tokens), "max": max(tokens)},
        "artefact_manifest_sha256": reviewer.digest,
    }
    # How many bodies the second stage reads (the head's logit inside its band): each of those pays the transformer.
    doc["second_stage_share"] = statistics.mean(reviewer.review_request(b, deadline_s=10).second_stage for b in bodies)
    doc["review_alone"] = time_review(reviewer, bodies, cold=False)
    print(f"review alone ({min(tokens)}-{max(tokens)} tokens): {json.dumps(doc['review_alone'])}", flush=True)
    print(f"share of bodies the second stage read: {doc['second_stage_share']:.2f}", flush=True)
    doc["review_alone_cold"] = time_review(reviewer, bodies, cold=True)
    print(f"review alone, word cache emptied each time: {json.dumps(doc['review_alone_cold'])}", flush=True)
    # End to end, only the bodies that may leave: the route has no sovereign backend, so one the review flags would
    # get 503 with the review on (and the other arm would not be comparable), one the rules raise 403 in both.
    from routing.classify import classify_request
    from routing.levels import Level

    passing = [
        b
        for b in bodies
        if not reviewer.review_request(b, deadline_s=10).sensitive and classify_request(b).level is Level.OFFICIAL
    ]
    doc["end_to_end_bodies"] = len(passing)
    with tempfile.TemporaryDirectory() as tmp:
        doc["end_to_end"] = asyncio.run(_end_to_end(args.model, passing, Path(tmp)))
    print(f"end to end, side by side: {json.dumps(doc['end_to_end'])}", flush=True)
    if args.transformer:
        doc["transformer"] = time_transformer(args.model, bodies[0], max(5, args.requests // 50))
        print(f"full MiniLM transformer over the same tokens: {json.dumps(doc['transformer'])}", flush=True)
    doc["loadavg_after"] = loadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
