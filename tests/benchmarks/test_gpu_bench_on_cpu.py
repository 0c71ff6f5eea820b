"""The GPU benchmark script, run end to end on CPU engines with a small sweep (``--cpu``): vLLM's own client on the
prefix-repetition dataset against the gateway with prefix-aware routing, the target's engine
metrics recorded with its results. Known to work here before it is run on a GPU node. The shared prefix is one of
vLLM's KV-cache blocks (128 tokens on the CPU): a shorter one is never cached."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine


def test_the_script_runs_on_cpu_engines_and_records_engine_metrics(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # fmt: off
    command = [
        sys.executable, "-m", "benchmarks.gpu.run_gpu_bench", "--cpu", "--model-source", str(tiny_model),
        "--out", str(out), "--targets", "gateway_prefix_aware", "--datasets", "prefix-repetition",
        "--engine-replicas", "1", "--concurrency", "2", "--sweep", "1", "--num-prompts", "6", "--rounds", "1",
        "--input-len", "160", "--prefix-len", "128", "--num-prefixes", "2", "--output-len", "4",
        "--max-model-len", "256", "--max-num-seqs", "4",
    ]
    # fmt: on
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((out / "prefix-repetition" / "compare-prefix-repetition.json").read_text())
    assert doc["config"]["dataset"] == "prefix_repetition" and doc["config"]["client"] == "vllm bench serve"
    for name in ("gateway_prefix_aware",):  # one target keeps the suite short; any other runs the same code
        summary = doc["targets"][name]
        assert summary["failed"] == 0 and summary["completed"] == 6, summary
        assert [p["max_concurrency"] for p in doc["sweeps"][name]] == [1]
        stats = doc["engine_stats"][name]
        assert stats["samples"] >= 2 and stats["prefix_cache_queries_tokens"] > 0, stats
        assert stats["prefix_cache_hit_rate"] is not None
    assert (out / "command.txt").exists()
