"""Unattended GPU benchmark: vLLM vs stock Ray Serve LLM vs this gateway, plus a concurrency sweep.

    python -m benchmarks.gpu.run_gpu_bench --model-source /models/Llama-3.1-8B-Instruct --out results/gpu-$(date +%F)

Checks its prerequisites first (GPUs visible, the CUDA build of vLLM importable, weights present and matching
their manifest) and exits 3 naming each missing piece, before starting any server. Then it writes
``compare.json``, ``compare.csv``, the latency-versus-throughput PNGs, ``nvidia-smi.txt`` and the exact
command line into ``--out``.
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
    p.add_argument("--targets", default="vllm,ray_serve_llm,gateway")
    p.add_argument("--rounds", type=int, default=3, help="headline rounds per target; the median one counts")
    p.add_argument("--check-only", action="store_true", help="run the prerequisite checks and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problems = check_all(args.model_source)
    if problems:
        print("GPU benchmark not started; missing prerequisites:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_PREREQUISITES
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
        accelerator="gpu",
        tensor_parallel_size=args.tensor_parallel_size,
        workdir=args.out / "logs",
        rounds=args.rounds,
        progress=False,
    )
    for path in write_outputs(doc, args.out / "compare.json", args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
