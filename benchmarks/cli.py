"""``sovereign bench serve|compare|overhead|classify|classify-worst|audit-verify|egress-review``: benchmarks."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_MODEL_SOURCE = Path("var/models/smollm2")


def _percentiles(text: str) -> list[float]:
    values = [float(x) for x in text.split(",") if x.strip()]
    if not values or any(not 0 < v <= 100 for v in values):
        raise argparse.ArgumentTypeError("percentiles: comma-separated numbers in (0, 100]")
    return values


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated integers") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("values must be at least 1")
    return values


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("header: NAME:VALUE")
    return name.strip(), value.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sovereign bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="load-test any OpenAI-compatible server (streaming)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v1")
    where.add_argument("--fake", action="store_true", help="start a no-op fake server and drive it (client check)")
    s.add_argument("--model", default="default")
    s.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    s.add_argument("--api-key", default=None, help="default: $SOVEREIGN_API_KEY, then $OPENAI_API_KEY")
    s.add_argument("--header", type=_header, action="append", default=[], help="extra header NAME:VALUE")
    s.add_argument("--num-prompts", type=int, default=100)
    s.add_argument("--request-rate", type=float, default=math.inf, help="req/s; inf (default) sends all at once")
    s.add_argument("--arrival", choices=["poisson", "fixed"], default="poisson")
    s.add_argument("--max-concurrency", type=int, default=None)
    s.add_argument("--warmup", type=int, default=0, help="requests sent (and discarded) before measuring")
    s.add_argument("--dataset", choices=["random", "jsonl"], default="random")
    s.add_argument("--dataset-path", type=Path, help='JSONL: {"prompt": ..., "output_len"?: N} per line')
    s.add_argument("--input-len", type=int, default=128, help="random dataset: prompt length in words")
    s.add_argument("--output-len", type=int, default=64, help="max_tokens asked for")
    s.add_argument("--range-ratio", type=float, default=0.0, help="random lengths within ±ratio of the mean")
    s.add_argument("--ignore-eos", action="store_true", help="ask the server to generate exactly --output-len")
    s.add_argument("--goodput", nargs="+", default=[], metavar="NAME:MS", help="SLOs: ttft:MS tpot:MS e2el:MS")
    s.add_argument("--percentiles", type=_percentiles, default=[50.0, 90.0, 99.0])
    s.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label")
    s.add_argument("--json", type=Path, help="write the result JSON here")
    s.add_argument("--csv", type=Path, help="write per-request rows here")
    s.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("compare", help="vLLM vs stock Ray Serve LLM vs this gateway, same engine and load")
    c.add_argument("--model-source", type=Path, default=DEFAULT_MODEL_SOURCE)
    c.add_argument("--concurrency", type=int, default=16)
    c.add_argument("--num-prompts", type=int, default=64)
    c.add_argument("--input-len", type=int, default=128)
    c.add_argument("--output-len", type=int, default=64)
    c.add_argument("--sweep", type=_ints, default=[], help="also run these concurrencies, e.g. 1,4,16,32")
    c.add_argument(
        "--targets",
        type=lambda t: t.split(","),
        default=None,
        help="comma-separated, run in the order given: vllm, ray_serve_llm, gateway (the default), and "
        "only when named, gateway_unplaced (no CPU placement), gateway_paced (150 ms stream "
        "pacing at any load, as before), "
        "gateway_nice15 and gateway_nice0 (placement, every worker at that nice), "
        "gateway_no_engine_metrics (the engine's vLLM metrics off), gateway_prefix_aware (Ray Serve LLM's "
        "prefix-cache-affinity router over the engine replicas)",
    )
    c.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="headline load this many times per target; the median round counts (default 3)",
    )
    c.add_argument(
        "--client",
        choices=["sovereign", "vllm"],
        default="sovereign",
        help="the load generator: this suite's (default) or vLLM's own `vllm bench serve`, run as "
        "`python -m benchmarks.vllm_client` (the tokenizer comes from --model-source)",
    )
    c.add_argument(
        "--dataset",
        choices=["random", "prefix-repetition"],
        default="random",
        help="prefix-repetition: vLLM's dataset of prompts sharing --num-prefixes prefixes of --prefix-len tokens "
        "(needs --client vllm)",
    )
    c.add_argument("--prefix-len", type=int, default=None, help="prefix-repetition: default 3/4 of --input-len")
    c.add_argument("--num-prefixes", type=int, default=4, help="prefix-repetition: distinct shared prefixes")
    c.add_argument("--engine-replicas", type=int, default=1, help="engine replicas of the gateway targets")
    c.add_argument(
        "--engine-stats-interval",
        type=float,
        default=0.0,
        help="seconds between readings of the engine's metrics during a run, for their peaks (KV-cache use, "
        "queue); 0 (the default): read them before and after only. Each reading costs the targets behind Ray "
        "CPU: Ray's endpoint renders every Ray metric",
    )
    c.add_argument(
        "--cpu-hog",
        action="store_true",
        help="measure each target with a busy process beside it on the CPUs its engine leaves free",
    )
    c.add_argument("--cpu-threads", type=int, default=None, help="engine OMP threads (default: all cores)")
    c.add_argument("--max-model-len", type=int, default=2048)
    c.add_argument("--max-num-seqs", type=int, default=64)
    c.add_argument("--dtype", default="bfloat16")
    c.add_argument("--warmup", type=int, default=None, help="default: max(4 * concurrency, 32)")
    c.add_argument("--ready-timeout", type=float, default=900.0)
    c.add_argument("--workdir", type=Path, help="logs and configs (default: a new temp dir)")
    c.add_argument("--plots-dir", type=Path, help="default: beside --json")
    c.add_argument("--json", type=Path, required=True)
    c.add_argument("--no-progress", action="store_true")

    o = sub.add_parser("overhead", help="gateway vs a fast fake upstream: added latency and max rate")
    o.add_argument("--json", type=Path, required=True)
    o.add_argument("--requests-c1", type=int, default=300)
    o.add_argument("--requests-max", type=int, default=2000)
    o.add_argument("--concurrency", type=int, default=64, help="for the highest sustained rate")
    o.add_argument("--ready-timeout", type=float, default=300.0)
    o.add_argument(
        "--http-client",
        choices=["aiohttp", "httpx"],
        help="the gateway's transport to the upstream (default: the server's own default)",
    )
    o.add_argument(
        "--jwt",
        action="store_true",
        help="also drive the same gateway with an OIDC bearer token (RS256 JWT) instead of the API key, "
        "and show the two side by side",
    )
    o.add_argument(
        "--router-replicas",
        default="",
        help="comma-separated router replica counts to measure side by side, e.g. 1,2 "
        "(server.ingress_replicas; default: one gateway with one replica)",
    )
    o.add_argument("--workdir", type=Path)
    o.add_argument("--no-progress", action="store_true")

    sub.add_parser("classify", help="classifier throughput (see `sovereign bench classify --help`)", add_help=False)
    sub.add_parser(
        "egress-review",
        help="latency the egress review adds (see `sovereign bench egress-review --help`)",
        add_help=False,
    )
    sub.add_parser(
        "classify-worst",
        help="classifier time on the costliest bodies under the size limit "
        "(see `sovereign bench classify-worst --help`)",
        add_help=False,
    )
    sub.add_parser(
        "audit-verify", help="`audit verify` on a generated log of N records (default ten million)", add_help=False
    )
    return parser


def _serve(args: argparse.Namespace) -> int:
    from benchmarks.datasets import jsonl_prompts, random_prompts
    from benchmarks.loadgen import (
        LoadConfig,
        format_table,
        run_load,
        summarize,
        write_json,
        write_requests_csv,
    )
    from benchmarks.metrics import parse_goodput

    try:
        goodput = parse_goodput(args.goodput)
        if args.dataset == "jsonl":
            if args.dataset_path is None:
                raise ValueError("--dataset jsonl needs --dataset-path")
            prompts = jsonl_prompts(args.dataset_path, args.num_prompts, args.output_len, args.seed)
        else:
            prompts = random_prompts(args.num_prompts, args.input_len, args.output_len, args.range_ratio, args.seed)
    except (ValueError, OSError) as exc:
        print(f"sovereign bench serve: {exc}", file=sys.stderr)
        return 2

    fake = None
    base_url, model = args.base_url, args.model
    if args.fake:
        from benchmarks.targets import start_fake

        fake = start_fake(Path(tempfile.mkdtemp(prefix="sovereign-fake-")))
        base_url = fake.base_url
    try:
        cfg = LoadConfig(
            base_url=base_url,
            model=model,
            endpoint=args.endpoint,
            api_key=args.api_key or os.environ.get("SOVEREIGN_API_KEY") or os.environ.get("OPENAI_API_KEY"),
            request_rate=args.request_rate,
            arrival=args.arrival,
            max_concurrency=args.max_concurrency,
            warmup=args.warmup,
            ignore_eos=args.ignore_eos,
            timeout_s=args.timeout,
            seed=args.seed,
            headers=dict(args.header),
        )
        outcome = run_load(cfg, prompts, progress=not args.no_progress)
    finally:
        if fake is not None:
            fake.stop()
    summary = summarize(cfg, outcome, goodput or None, args.percentiles, args.label)
    print(format_table(summary, args.percentiles))
    if args.json:
        write_json(args.json, summary)
    if args.csv:
        write_requests_csv(args.csv, outcome.results)
    return 0 if summary["completed"] else 1


def _compare(args: argparse.Namespace) -> int:
    from benchmarks.compare import DEFAULT_TARGETS, TARGET_ORDER, format_comparison, run_compare, write_outputs
    from benchmarks.processes import ServerError

    args.targets = args.targets or list(DEFAULT_TARGETS)
    unknown = [t for t in args.targets if t not in TARGET_ORDER]
    if unknown:
        print(
            f"sovereign bench compare: unknown targets {unknown}; choose from {list(TARGET_ORDER)}",
            file=sys.stderr,
        )
        return 2
    if args.rounds < 1:
        print("sovereign bench compare: --rounds must be at least 1", file=sys.stderr)
        return 2
    if not (args.model_source / "config.json").exists():
        print(
            f"sovereign bench compare: no model at {args.model_source} (run `sovereign models prepare`)",
            file=sys.stderr,
        )
        return 2
    try:
        doc = run_compare(
            args.model_source.resolve(),
            concurrency=args.concurrency,
            num_prompts=args.num_prompts,
            input_len=args.input_len,
            output_len=args.output_len,
            sweep=args.sweep,
            targets=args.targets,
            cpu_threads=args.cpu_threads,
            max_model_len=args.max_model_len,
            max_num_seqs=args.max_num_seqs,
            dtype=args.dtype,
            warmup=args.warmup,
            ready_timeout_s=args.ready_timeout,
            workdir=args.workdir,
            rounds=args.rounds,
            cpu_hog=args.cpu_hog,
            progress=not args.no_progress,
            client=args.client,
            prefix=prefix_repetition(args),
            engine_replicas=args.engine_replicas,
            engine_stats_interval_s=args.engine_stats_interval,
        )
    except (ServerError, ValueError) as exc:
        print(f"sovereign bench compare: {exc}", file=sys.stderr)
        return 1
    for path in write_outputs(doc, args.json, args.plots_dir):
        print(f"wrote {path}")
    print(format_comparison(doc))
    return 0


def prefix_repetition(args: argparse.Namespace) -> Any:
    """The prefix-repetition dataset the arguments ask for (``--dataset``, ``--prefix-len``, ``--num-prefixes``), or
    None for the random one."""
    from benchmarks.vllm_client import PrefixRepetition

    if args.dataset != "prefix-repetition":
        return None
    return PrefixRepetition(args.prefix_len or args.input_len * 3 // 4, args.num_prefixes)


def _overhead(args: argparse.Namespace) -> int:
    from benchmarks.loadgen import write_json
    from benchmarks.overhead import format_overhead, run_overhead
    from benchmarks.processes import ServerError

    try:
        doc = run_overhead(
            requests_c1=args.requests_c1,
            requests_max=args.requests_max,
            max_concurrency=args.concurrency,
            ready_timeout_s=args.ready_timeout,
            http_client=args.http_client,
            jwt=args.jwt,
            router_replicas=tuple(int(n) for n in args.router_replicas.split(",") if n.strip()),
            workdir=args.workdir,
            progress=not args.no_progress,
        )
    except ServerError as exc:
        print(f"sovereign bench overhead: {exc}", file=sys.stderr)
        return 1
    write_json(args.json, doc)
    print(format_overhead(doc))
    print(f"wrote {args.json}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["classify"]:
        from benchmarks.classify_bench import main as classify_main

        return classify_main(argv[1:])
    if argv[:1] == ["egress-review"]:
        from benchmarks.egress_review_bench import main as egress_main

        return egress_main(argv[1:])
    if argv[:1] == ["classify-worst"]:
        from benchmarks.classify_worst import main as worst_main

        return worst_main(argv[1:])
    if argv[:1] == ["audit-verify"]:
        from benchmarks.audit_verify import main as audit_verify_main

        return audit_verify_main(argv[1:])
    args = _parser().parse_args(argv)
    return {"serve": _serve, "compare": _compare, "overhead": _overhead}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
