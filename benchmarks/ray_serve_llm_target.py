"""Stock Ray Serve LLM as a benchmark target: ``build_openai_app`` over the gateway's own ``LLMConfig``.

Run as ``python -m benchmarks.ray_serve_llm_target --backend SPEC.yaml --port N``; it serves until SIGINT or
SIGTERM, then shuts Serve and its private Ray instance down. Using ``serving.app.llm_config`` means the engine,
its arguments and its environment are exactly those the gateway deploys: the only difference measured is
what sits in front of the engine.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", type=Path, required=True, help="YAML of one vllm backend (gateway schema)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ready-file", type=Path, help="created once every deployment is running")
    parser.add_argument("--metrics-port", type=int, help="Ray's Prometheus endpoint (the engine's ray_vllm_* metrics)")
    args = parser.parse_args(argv)

    import ray
    from ray import serve
    from ray.serve.llm import build_openai_app

    from serving.app import llm_config
    from serving.config import VLLMBackendConfig
    from serving.thirdparty import init_ray_with_metrics_port

    backend = VLLMBackendConfig.model_validate(yaml.safe_load(args.backend.read_text()))
    # A private Ray instance ("local"), never someone else's cluster; 4 logical CPUs let Serve's actors
    # schedule on a 2-core machine, as the gateway does.
    init_ray_with_metrics_port(
        args.metrics_port, address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        app = build_openai_app({"llm_configs": [llm_config(backend)]})
        serve.run(app, name="stock", route_prefix="/", blocking=False)
        print(f"ray serve llm ready on http://{args.host}:{args.port}/v1", flush=True)
        if args.ready_file is not None:
            args.ready_file.touch()
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
