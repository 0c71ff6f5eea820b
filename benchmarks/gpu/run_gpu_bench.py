"""Unattended GPU benchmark: plain vLLM, stock Ray Serve LLM and this gateway (with Serve's default request router
and with the prefix-cache-affinity one), driven by vLLM's own ``vllm bench serve`` on its random and
prefix-repetition datasets, with a concurrency sweep (1 to 128 by default).

    python -m benchmarks.gpu.run_gpu_bench --model-source /models/Llama-3.1-8B-Instruct --out results/gpu-$(date +%F)

Checks its prerequisites first (GPUs visible, the CUDA build of vLLM importable, weights present and matching
their manifest) and exits 3 naming each missing piece, before starting any server. Then, per dataset, it writes
``compare-DATASET.json`` (with each target's engine metrics over its headline rounds: prefix-cache hit rate, peak
KV-cache use, peak queue; ``engine_stats``), ``compare-DATASET.csv`` and the latency-versus-throughput PNGs in
``--out/DATASET/``, and ``nvidia-smi.txt`` and the exact command line into ``--out``.

``--cpu`` runs the same script on CPU engines (no GPU checks; a small sweep is the caller's choice): its test.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu.prereqs import check_all

EXIT_PREREQUISITES = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu.run_gpu_bench", description=__doc__.splitlines()[0])
    p.add_argument("--model-source", type=Path, required=True, help="local weights folder with its manifest")
    p.add_argument("--out", type=Path, required=True, help="folder for JSON, CSV, plots and logs")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--sweep", default="1,4,16,32,64,128")
    p.add_argument("--num-prompts", type=int, default=512)
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--targets", default="vllm,ray_serve_llm,gateway,gateway_prefix_aware")
    p.add_argument("--datasets", default="random,prefix-repetition", help="vLLM's datasets, comma-separated")
    p.add_argument("--prefix-len", type=int, default=None, help="prefix-repetition: default 3/4 of --input-len")
    p.add_argument("--num-prefixes", type=int, default=8, help="prefix-repetition: distinct shared prefixes")
    p.add_argument("--engine-replicas", type=int, default=2, help="engine replicas of the gateway targets")
    p.add_argument("--client", choices=["vllm", "sovereign"], default="vllm", help="load generator (random only)")
    p.add_argument("--cpu", action="store_true", help="CPU engines instead of GPUs (the script's own test)")
    p.add_argument("--rounds", type=int, default=3, help="headline rounds per target; the median one counts")
    p.add_argument("--check-only", action="store_true", help="run the prerequisite checks and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(datasets) - {"random", "prefix-repetition"})
    if unknown:
        print(f"unknown datasets {unknown}: random, prefix-repetition", file=sys.stderr)
        return 2
    problems = [] if args.cpu else check_all(args.model_source)
    if problems:
        print("GPU benchmark not started; missing prerequisites:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_PREREQUISITES
    if not args.cpu:
        print("prerequisites: GPUs visible, CUDA vLLM importable, weights match their manifest")
    if args.check_only:
        return 0

    from benchmarks.compare import run_compare, write_outputs

    args.out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu.run_gpu_bench",
        *(argv if argv is not None else sys.argv[1:]),
    ]
    (args.out / "command.txt").write_text(shlex.join(command) + "\n")
    smi = shutil.which("nvidia-smi")
    if smi:
        (args.out / "nvidia-smi.txt").write_text(subprocess.run([smi], capture_output=True, text=True).stdout)
    from benchmarks.vllm_client import PrefixRepetition

    for dataset in datasets:
        prefix = (
            PrefixRepetition(args.prefix_len or args.input_len * 3 // 4, args.num_prefixes)
            if dataset == "prefix-repetition"
            else None
        )
        doc = run_compare(
            args.model_source.resolve(),
            concurrency=args.concurrency,
            num_prompts=args.num_prompts,
            input_len=args.input_len,
            output_len=args.output_len,
            sweep=[int(c) for c in args.sweep.split(",") if c.strip()],
            targets=[t for t in args.targets.split(",") if t],
            max_model_len=args.max_model_len,
            max_num_seqs=args.max_num_seqs,
            accelerator="cpu" if args.cpu else "gpu",
            tensor_parallel_size=args.tensor_parallel_size,
            workdir=args.out / "logs" / dataset,
            rounds=args.rounds,
            progress=False,
            client="vllm" if prefix is not None else args.client,
            prefix=prefix,
            engine_replicas=args.engine_replicas,
        )
        for path in write_outputs(doc, args.out / dataset / f"compare-{dataset}.json", args.out / dataset):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
