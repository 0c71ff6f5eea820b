"""Run the real application (`sovereign serve --config`) as a subprocess, as an operator would."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.processes import ServerError, start_process, stop_process, wait_ready

CLIENT_TIMEOUT_S = 180.0
# Engines in tests run eagerly: vLLM's torch.compile costs about 20 s per engine start on this CPU with its kernel
# cache warm (more on a fresh machine), and no test is about compiled kernels. `make serve` and the benchmarks keep
# vLLM's default (compiled).
TEST_ENGINE: dict[str, Any] = {"enforce_eager": True}


@dataclass
class RunningApp:
    base_url: str  # http://127.0.0.1:PORT/v1
    root: str  # http://127.0.0.1:PORT
    keys: dict[str, str]  # caller name -> API key
    audit_path: Path
    log_path: Path
    config: dict[str, Any]
    process: subprocess.Popen[bytes]
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, caller: str = "tester", **kwargs: Any) -> Any:
        from openai import OpenAI

        # A bounded wait (the SDK's default is 600 s): a stuck engine fails its tests in minutes, not hours.
        return OpenAI(
            base_url=self.base_url, api_key=self.keys[caller], max_retries=0, **{"timeout": CLIENT_TIMEOUT_S, **kwargs}
        )

    def headers(self, caller: str = "tester") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[caller]}"}

    @property
    def metrics_url(self) -> str:
        """The router's Prometheus listener (config server.metrics_port), off the API port."""
        return f"http://127.0.0.1:{self.config['server']['metrics_port']}/metrics"

    @property
    def ray_metrics_url(self) -> str:
        """Ray's Prometheus endpoint (config server.ray_metrics_port): the engines' vLLM metrics, as ray_vllm_*."""
        return f"http://127.0.0.1:{self.config['server']['ray_metrics_port']}/metrics"


def start_app(
    config: dict[str, Any],
    workdir: Path,
    keys: dict[str, str],
    timeout_s: float = 900,
    env: dict[str, str] | None = None,
    own_session: bool = False,
) -> RunningApp:
    """Write the config, start the server, wait for /ready (or fail with the server's log tail). ``own_session``:
    in a session of its own, as a server started from another terminal is (benchmarks/probes)."""
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    process = _start(["--config", str(config_path)], workdir, env, own_session)
    _wait_ready(process, config["server"]["port"], workdir / "server.log", timeout_s)
    root = f"http://127.0.0.1:{config['server']['port']}"
    return RunningApp(f"{root}/v1", root, keys, Path(config["audit"]["path"]), workdir / "server.log", config, process)


def start_dev_app(workdir: Path, port: int, env: dict[str, str] | None = None, timeout_s: float = 900) -> RunningApp:
    """``sovereign serve`` with no configuration (development mode) in ``workdir`` (its ``var/`` is there), on
    ``port``. The key is the one it prints."""
    process = _start([], workdir, {"SOVEREIGN_SERVER__PORT": str(port), **(env or {})}, own_session=False)
    log_path = workdir / "server.log"
    _wait_ready(process, port, log_path, timeout_s)
    deadline = time.monotonic() + 60  # /ready answers a moment before the banner is printed
    while True:
        lines = log_path.read_text().splitlines()
        at = next((i for i, line in enumerate(lines[:-1]) if line.startswith("development API key")), None)
        if at is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert at is not None, f"no development key printed:\n{log_path.read_text()[-4000:]}"
    key = lines[at + 1].strip()
    root = f"http://127.0.0.1:{port}"
    return RunningApp(f"{root}/v1", root, {"developer": key}, workdir / "var" / "audit.jsonl", log_path, {}, process)


def _start(args: list[str], workdir: Path, env: dict[str, str] | None, own_session: bool) -> subprocess.Popen[bytes]:
    """``sovereign serve ARGS`` in ``workdir``, its output in ``server.log`` there."""
    return start_process(
        [sys.executable, "-m", "serving.cli", "serve", *args],
        workdir / "server.log",
        {"VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=workdir,
        own_session=own_session,
    )


def _wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path, timeout_s: float) -> None:
    """Wait for ``/ready``; on failure the server is stopped and the error carries its log tails."""
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", process, log_path, timeout_s)
    except ServerError:
        stop_app(process)
        raise


def stop_app(process: subprocess.Popen[bytes], timeout_s: float = 60) -> int | None:
    """SIGINT (Ctrl-C) to the server alone, then wait; SIGTERM and SIGKILL to its process group if it does not go
    (the server under it then stops on its own: serving/supervise.py). Nothing else is killed: the suite's check at
    the end finds anything the server left running."""
    return stop_process(process, timeout_s, whole_group=False, kill_stragglers=False)


def wait_for_every_backend(app: RunningApp, timeout_s: float = 900) -> None:
    """The server is ready once any route is; the tests need every engine. An engine that never comes up fails
    every test that uses the app at once, with the app's post-mortem, rather than each one at its own timeout."""
    deadline = time.monotonic() + timeout_s
    backends: dict[str, bool] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            backends = httpx.get(f"{app.root}/ready", timeout=30).json()["backends"]
            if all(backends.values()):
                return
        time.sleep(2)
    down = sorted(name for name, up in backends.items() if not up)
    raise AssertionError(f"backends not ready after {timeout_s:.0f} s: {down}\n{post_mortem(app)}")


def post_mortem(app: RunningApp, tail: int = 12) -> str:
    """What an operator would read first when the running app misbehaves: its processes (title, state, CPU time,
    memory), the host's free memory, and the last lines of the server's log and of each Serve replica's log and
    each Ray worker's error stream. None of these holds prompt text (tests/reliability/test_secrets.py checks)."""
    import psutil

    from tests.reliability.procs import descendants, ray_session_dir

    lines = [f"host: {psutil.virtual_memory().available >> 20} MiB available, load {os.getloadavg()}"]
    engines = []  # the engine replicas' pids: their error streams carry the engine's own (vLLM's) messages
    for proc in descendants(app.process.pid):
        try:
            with proc.oneshot():
                title = " ".join(proc.cmdline())[:70]
                cpu = proc.cpu_times()
                lines.append(
                    f"  pid {proc.pid} {proc.status()} cpu {cpu.user + cpu.system:.0f} s "
                    f"rss {proc.memory_info().rss >> 20} MiB: {title}"
                )
        except psutil.Error:
            continue
        if "engine-" in title:
            engines.append(proc.pid)
    logs = [app.log_path]
    session = ray_session_dir(app.process.pid)
    if session is not None:
        serve_logs = session / "logs" / "serve"
        logs += sorted(serve_logs.glob("controller_*.log")) + sorted(serve_logs.glob("replica_*engine*.log"))
        logs += [path for pid in engines for path in sorted((session / "logs").glob(f"worker-*-{pid}.err"))]
    for path in logs:
        try:
            text = path.read_text(errors="replace").splitlines()[-tail:]
        except OSError:
            continue
        lines.append(f"--- {path.name} (last {len(text)} lines)")
        lines += [line[:300] for line in text]
    return "\n".join(lines)
