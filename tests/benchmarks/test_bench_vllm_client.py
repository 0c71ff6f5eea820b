"""``vllm bench serve`` as the independent client: its arguments, and its detailed result in this suite's terms."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from benchmarks.vllm_client import summary_from_vllm, vllm_bench_args


def test_arguments_name_a_local_tokenizer_a_closed_loop_and_detailed_results(tmp_path: Path):
    args = vllm_bench_args(
        base_url="http://127.0.0.1:8000/v1",
        model="smollm2",
        tokenizer=tmp_path / "tok",
        concurrency=16,
        num_prompts=64,
        input_len=128,
        output_len=64,
        result_dir=tmp_path,
        result_filename="r.json",
        warmups=8,
    )
    pairs = dict(itertools.pairwise(args))
    assert pairs["--base-url"] == "http://127.0.0.1:8000" and pairs["--endpoint"] == "/v1/chat/completions"
    assert pairs["--backend"] == "openai-chat" and pairs["--tokenizer"] == str(tmp_path / "tok")
    assert pairs["--max-concurrency"] == "16" and pairs["--request-rate"] == "inf"
    assert pairs["--random-input-len"] == "128" and pairs["--random-output-len"] == "64"
    assert pairs["--num-warmups"] == "8"
    assert {"--ignore-eos", "--save-result", "--save-detailed"} <= set(args)


def test_a_detailed_result_reads_as_this_suites_summary():
    result = {
        "duration": 2.0,
        "max_concurrency": 2,
        "output_throughput": 5.5,
        "median_ttft_ms": 100.0,
        "ttfts": [0.1, 0.2, None],
        "latencies": [0.5, 0.8, 0.0],
        "output_lens": [4, 4, 0],
        "input_lens": [128, 128, 128],
        "errors": ["", "", "connection reset"],
        # the first stream smooth; the second in bursts (gaps of microseconds: one network read)
        "itls": [[0.1, 0.1, 0.2], [0.6, 1e-5, 1e-5], []],
    }
    s = summary_from_vllm(result)
    assert s["completed"] == 2 and s["failed"] == 1
    assert s["output_throughput"] == pytest.approx(8 / 2.0)
    assert s["median_ttft_ms"] == pytest.approx(150.0)
    assert s["deliveries"] == 4 + 2
    assert s["multi_token_event_share"] == pytest.approx(1 / 6)
    assert s["vllm_bench"]["output_throughput"] == 5.5 and s["vllm_bench"]["median_ttft_ms"] == 100.0
    assert s["client"] == "vllm bench serve" and s["max_concurrency"] == 2


def test_the_prefix_repetition_dataset_shares_prefixes_of_the_asked_length(tmp_path: Path):
    from benchmarks.vllm_client import PrefixRepetition

    common: dict[str, Any] = {
        "base_url": "http://127.0.0.1:8000/v1",
        "model": "m",
        "tokenizer": tmp_path,
        "concurrency": 4,
        "num_prompts": 16,
        "input_len": 512,
        "output_len": 32,
        "result_dir": tmp_path,
        "result_filename": "r",
    }
    pairs = dict(itertools.pairwise(vllm_bench_args(**common, prefix=PrefixRepetition(384, 8))))
    assert pairs["--dataset-name"] == "prefix_repetition"
    assert pairs["--prefix-repetition-prefix-len"] == "384" and pairs["--prefix-repetition-suffix-len"] == "128"
    assert pairs["--prefix-repetition-num-prefixes"] == "8" and pairs["--prefix-repetition-output-len"] == "32"
    assert "--random-input-len" not in pairs
    with pytest.raises(ValueError):
        vllm_bench_args(**common, prefix=PrefixRepetition(512, 8))
