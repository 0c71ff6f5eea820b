"""``sovereign bench classify`` runs end to end on a small corpus (figures belong to the full run)."""

from __future__ import annotations

import json

from benchmarks.classify_bench import build_corpus, chat_request, main


def test_bench_writes_the_figures(tmp_path):
    out = tmp_path / "classify.json"
    args = ["--json", str(out), "--size-mb", "0.05", "--runs", "5", "--repeat", "1", "--min-pass-s", "0"]
    assert main([*args, "--department-mb", "0.05"]) == 0
    result = json.loads(out.read_text())
    assert {"ours_mb_per_s", "presidio_mb_per_s", "ratio", "chat_p99_ms"} <= set(result)
    assert result["ours_mb_per_s"] > 0 and result["presidio_mb_per_s"] > 0
    assert result["documents_local_only"] > 0
    department = result["department_texts"]
    assert department["texts"] > 0 and department["ours_mb_per_s"] > 0 and department["presidio_mb_per_s"] > 0
    assert set(department["long_documents"]) == {"128k", "512k"}


def test_corpus_is_deterministic_and_mixed():
    docs = build_corpus(0.05, seed=3)
    assert docs == build_corpus(0.05, seed=3)
    assert sum(len(d.encode()) for d in docs) >= 50_000


def test_chat_request_size():
    body = chat_request(32_000, ["x" * 1000])
    assert sum(len(m["content"]) for m in body["messages"][1:]) == 128_000
