"""Does a running server starve the rest of the host of CPU? A diagnostic probe, not part of the suite.

    python -m benchmarks.probes.session_starvation --nice default --streams 6 --json OUT

Starts the server on the test suite's tiny model (tests/support: the same harness and model the suite uses; one
engine slot), streams ``--streams`` long completions one after another and reads each as fast as it arrives, while
a second process in a session of its own sleeps 0.1 s in a loop. Reports, per stream, the time to the response
headers and the longest pause between lines at the client, and the longest the sleeper overslept. With the kernel's
autogroup on (``/proc/sys/kernel/sched_autogroup_enabled``), each session is scheduled as one group; the server
runs in a session of its own unless ``--same-session``. ``--nice``: the server's own default (the request path at
nice 0, vLLM's workers at 15; serving/placement.py), or every Ray and vLLM worker at 15 or at 0. Figures:
benchmarks/RESULTS.md, runs Q and S.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.probes import probe_parser, report
from serving.placement import ENGINE_NICE_ENV

SLEEPER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
last, worst = time.monotonic(), 0.0
try:
    while True:
        time.sleep(0.1)
        now = time.monotonic(); worst = max(worst, now - last - 0.1); last = now
finally:
    print(round(worst, 3), flush=True)
"""


# What each --nice runs: the server's own default (Ray's workers, the request path, at nice 0 and vLLM's CPU
# workers at 15; serving/placement.py), everything at Ray's 15 (the default before), everything at 0.
NICE_ENV = {"default": {}, "15": {"RAY_worker_niceness": "15"}, "0": {"RAY_worker_niceness": "0", ENGINE_NICE_ENV: "0"}}


def stream_once(base_url: str, headers: dict[str, str], tokens: int) -> dict[str, float]:
    body = {
        "model": "local-only",
        "stream": True,
        "max_tokens": tokens,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "go"}],
    }
    sent = time.monotonic()
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, headers=headers, timeout=600) as response:
        response.raise_for_status()
        headers_s = time.monotonic() - sent
        last, longest_pause = time.monotonic(), 0.0
        for _ in response.iter_lines():
            now = time.monotonic()
            longest_pause, last = max(longest_pause, now - last), now
    return {
        "headers_s": round(headers_s, 3),
        "longest_pause_s": round(longest_pause, 3),
        "total_s": round(time.monotonic() - sent, 3),
    }


def run(nice: str, same_session: bool, streams: int, tokens: int) -> dict[str, Any]:
    import yaml

    from benchmarks.processes import start_process, stop_process, wait_ready
    from benchmarks.tiny_model import build_tiny_llama
    from models.manifest import write_manifest
    from routing.keys import create_key
    from serving.ports import free_port

    work = Path(tempfile.mkdtemp(prefix="starvation-"))
    try:
        model = build_tiny_llama(work / "tiny")
        write_manifest(model, "probe")
        port = free_port()
        config = {
            "server": {"host": "127.0.0.1", "port": port},
            "audit": {"path": str(work / "audit.jsonl")},
            "auth": {"keys_file": str(work / "keys.json")},
            "backends": [
                {
                    "name": "local",
                    "kind": "vllm",
                    "model_source": str(model),
                    "served_model_name": "tiny",
                    "max_classification": "SECRET",
                    "cpu_threads": 1,
                    "engine": {"dtype": "bfloat16", "max_model_len": 16384, "max_num_seqs": 1},
                }
            ],
            "models": [{"name": "local-only", "route": ["local"]}],
        }
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        auth = {"Authorization": f"Bearer {create_key(work / 'keys.json', 'probe')}"}
        base_url = f"http://127.0.0.1:{port}/v1"
        server = start_process(
            [sys.executable, "-m", "serving.cli", "serve", "--config", str(work / "config.yaml")],
            work / "server.log",
            {"VLLM_CPU_KVCACHE_SPACE": "1", **NICE_ENV[nice]},
            cwd=work,
            own_session=not same_session,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/ready", server, work / "server.log", 900)
            httpx.post(
                f"{base_url}/chat/completions",
                headers=auth,
                timeout=600,
                json={"model": "local-only", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
            )
            sleeper = subprocess.Popen(
                [sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True, start_new_session=True
            )
            results = [stream_once(base_url, auth, tokens) for _ in range(streams)]
            sleeper.terminate()
            overslept = float(sleeper.communicate(timeout=30)[0].strip() or "nan")
        finally:
            stop_process(server, whole_group=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return {
        "nice": nice,
        "same_session": same_session,
        "tokens": tokens,
        "autogroup": autogroup.read_text().strip() if autogroup.exists() else None,
        "streams": results,
        "sleeper_longest_overslept_s": overslept,
        "client_longest_wait_s": max(max(r["headers_s"], r["longest_pause_s"]) for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__)
    parser.add_argument(
        "--nice",
        choices=sorted(NICE_ENV),
        default="default",
        help="default: the server's own; 15 or 0: Ray's workers and vLLM's at that niceness",
    )
    parser.add_argument("--same-session", action="store_true", help="run the server in this probe's session")
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=8000)
    args = parser.parse_args(argv)
    return report(run(args.nice, args.same_session, args.streams, args.tokens), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
