"""The load generator against the fake OpenAI server: result fields, CSV, failure kinds, arrival patterns."""

from __future__ import annotations

import csv
import json
import math

import pytest

from benchmarks.cli import main as bench_main
from benchmarks.datasets import jsonl_prompts, random_prompts
from benchmarks.fake_openai import FakeOpenAIServer
from benchmarks.loadgen import LoadConfig, arrival_offsets, format_table, run_load, summarize


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


VLLM_FIELDS = [
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "std_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
    "date",
    "model_id",
    "num_prompts",
    "request_rate",
    "max_concurrency",
]


def test_arrival_offsets():
    assert arrival_offsets(3, math.inf, "poisson") == [0.0, 0.0, 0.0]
    assert arrival_offsets(3, 2.0, "fixed") == [0.0, 0.5, 1.0]
    poisson = arrival_offsets(2000, 10.0, "poisson", seed=1)
    assert poisson == sorted(poisson) and poisson == arrival_offsets(2000, 10.0, "poisson", seed=1)
    assert 150 < poisson[-1] < 250  # about n / rate
    with pytest.raises(ValueError):
        arrival_offsets(2, 0.0, "fixed")


def test_chat_run_uses_server_usage(fake):
    prompts = random_prompts(20, input_len=10, output_len=5)
    cfg = LoadConfig(base_url=fake.base_url, model="m", max_concurrency=4, warmup=3, ignore_eos=True, api_key="k")
    outcome = run_load(cfg, prompts)
    summary = summarize(cfg, outcome, {"ttft": 60_000})
    for name in VLLM_FIELDS:
        assert name in summary
    assert summary["completed"] == 20 and summary["failed"] == 0
    assert summary["total_output_tokens"] == 100  # the fake's usage: max_tokens each
    assert summary["total_input_tokens"] == sum(len(p.text.split()) for p in prompts)
    assert summary["usage_missing"] == 0
    assert summary["request_goodput"] == pytest.approx(summary["request_throughput"])
    bodies = [r["body"] for r in fake.received]
    assert len(bodies) == 23  # warm-up included
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} and b["ignore_eos"] for b in bodies)
    assert fake.received[0]["headers"]["authorization"] == "Bearer k"
    assert all(len(r.itl) == 4 for r in outcome.results)
    assert "Output token throughput" in format_table(summary)


def test_completions_at_a_fixed_rate(fake):
    cfg = LoadConfig(base_url=fake.base_url, model="m", endpoint="completions", request_rate=50.0, arrival="fixed")
    outcome = run_load(cfg, random_prompts(10, 5, 3))
    assert all(r.success and r.output_tokens == 3 for r in outcome.results)
    assert {r["path"] for r in fake.received} == {"/v1/completions"}


@pytest.mark.parametrize(
    ("mode", "kw", "kind"),
    [
        ("status", {"status": 503}, "http_503"),
        ("status", {"status": 429, "retry_after": 1}, "http_429"),
        ("broken_stream", {}, "broken_stream"),
        ("garbage", {}, "invalid_response"),
    ],
)
def test_failures_by_kind(fake, mode, kw, kind):
    fake.set_fault(mode, **kw)
    cfg = LoadConfig(base_url=fake.base_url, model="m", max_concurrency=2)
    summary = summarize(cfg, run_load(cfg, random_prompts(4, 5, 6)))
    assert summary["completed"] == 0
    assert summary["failures_by_kind"] == {kind: 4}


def test_timeout_kind(fake):
    fake.set_fault("hang")
    cfg = LoadConfig(base_url=fake.base_url, model="m", timeout_s=0.5)
    summary = summarize(cfg, run_load(cfg, random_prompts(2, 5, 6)))
    assert summary["failures_by_kind"] == {"timeout": 2}


def test_jsonl_dataset(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a b c", "output_len": 7}\n\n{"text": "d"}\n')
    prompts = jsonl_prompts(path, 5, default_output_len=3)
    assert [p.output_len for p in prompts] == [7, 3, 7, 3, 7]
    path.write_text('{"nope": 1}\n')
    with pytest.raises(ValueError, match=":1:"):
        jsonl_prompts(path, 1, 3)


def test_random_dataset_ranges_and_seed():
    a = random_prompts(50, 20, 10, range_ratio=0.5, seed=3)
    assert a == random_prompts(50, 20, 10, range_ratio=0.5, seed=3)
    assert all(5 <= p.output_len <= 15 for p in a)
    assert all(10 <= len(p.text.split()) - 1 <= 30 for p in a)
    assert len({p.text.split()[0] for p in a}) == 50  # distinct prefixes: no prefix-cache flattery


def test_cli_serve_writes_json_and_csv(fake, tmp_path, capsys):
    out, rows = tmp_path / "r.json", tmp_path / "r.csv"
    rc = bench_main(
        ["serve", "--base-url", fake.base_url, "--num-prompts", "12", "--max-concurrency", "3", "--output-len", "4",
         "--goodput", "ttft:60000", "tpot:60000", "--json", str(out), "--csv", str(rows), "--no-progress",
         "--percentiles", "50,95"]
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["completed"] == 12 and data["total_output_tokens"] == 48 and "p95_itl_ms" in data
    assert data["goodput_slos_ms"] == {"ttft": 60000.0, "tpot": 60000.0}
    with rows.open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 12 and all(r["success"] == "True" for r in table)
    assert "Serving Benchmark Result" in capsys.readouterr().out


def test_cli_rejects_bad_goodput(fake, capsys):
    assert bench_main(["serve", "--base-url", fake.base_url, "--goodput", "nope:1", "--no-progress"]) == 2
