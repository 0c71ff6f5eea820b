"""A stand-in for the server under the real supervisor (serving/supervise.py), for tests that need no Ray.

``python -m tests.support.fake_server supervise STATE PORT DRAIN MODE`` runs the real ``Supervisor`` in this process
(the process a test signals, as an operator signals ``sovereign serve``) over ``python -m tests.support.fake_server
serve MODE``, which behaves like the server in the ways that matter here: it reports steps on the supervisor's
channel, prints noise to its stdout (which must land in the log file, not the terminal), starts children that
carry its tag (as Ray's daemons, HAProxy and the engines do) and leaves them running when it exits, and stops on
SIGTERM, including the one the kernel sends when the supervisor dies. MODE:

- ``clean``: exits 0 on SIGTERM;
- ``stubborn``: ignores SIGTERM (the supervisor must kill it in time);
- ``orphan``: also starts a process whose parent exits at once (the supervisor adopts it and must kill it);
- ``busy``: also runs a child that starts a short-lived process every few milliseconds, as a compiler driver does
  while an engine builds its kernels (none of them is an orphan: the supervisor must leave them all alone).
- ``holds_channel``: one child inherits the write end of the supervisor's channel and keeps it open after the
  server has exited, as a server whose exit stalls in the kernel does: the supervisor must not wait on the pipe.

The fake server writes its pid, its children's pids and what stopped it to ``STATE/fake.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from serving.progress import Reporter

if TYPE_CHECKING:
    from serving.config import Settings

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _settings(port: int, drain: float) -> Settings:
    from serving.config import load_settings

    return load_settings(
        data={
            "server": {"host": "127.0.0.1", "port": port, "drain_timeout_s": drain},
            "backends": [
                {
                    "name": "remote",
                    "kind": "openai",
                    "sovereign": False,
                    "max_classification": "OFFICIAL",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "UNUSED_KEY",
                    "model": "m",
                }
            ],
            "models": [{"name": "default", "route": ["remote"]}],
        }
    )


def supervise(state: str, port: str, drain: str, mode: str) -> int:
    from serving.progress import Terminal
    from serving.supervise import Supervisor

    command = [sys.executable, "-m", "tests.support.fake_server", "serve", mode, state]
    return Supervisor([], _settings(int(port), float(drain)), Path(state), Terminal(), command=command).run()


def _write(path: Path, record: dict) -> None:
    """Atomically: the test reads the file while this process may be rewriting it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def serve(mode: str, state: str, *internal: str) -> int:
    from serving import lifeline

    args = dict(zip(internal[::2], internal[1::2], strict=True))
    report = Reporter(int(args["--channel"]))
    stopped = threading.Event()
    reason: dict[str, str] = {}

    def on_signal(signum: int, _frame: object) -> None:
        reason.setdefault("signal", signal.Signals(signum).name)
        if mode != "stubborn":
            stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lifeline.die_with_parent(signal.SIGTERM)
    report.begin("starting the fake")
    print("============== Deployment Options ==============  (noise for the log file)", flush=True)
    children = [subprocess.Popen(SLEEPER).pid for _ in range(2)]
    if mode == "orphan":  # a child that starts a grandchild and exits: the grandchild is orphaned
        subprocess.run([sys.executable, "-c", f"import subprocess; subprocess.Popen({SLEEPER!r})"], check=True)
    if mode == "busy":
        children.append(subprocess.Popen(["sh", "-c", "while :; do sleep 0.01; done"]).pid)
    if mode == "holds_channel":
        children.append(subprocess.Popen(SLEEPER, pass_fds=(int(args["--channel"]),)).pid)
    report.end("fake started")
    report.say(f"Sovereign inference server ready at http://127.0.0.1:{os.environ.get('FAKE_PORT', '0')}/v1")
    record = {"pid": os.getpid(), "children": children, "private": args["--private"]}
    _write(Path(state, "fake.json"), record)
    while not stopped.wait(0.1):
        pass
    report.begin("draining")
    time.sleep(0.2)
    report.end("drained")
    record["stopped_by"] = reason.get("signal", "?")
    _write(Path(state, "fake.json"), record)
    report.exit(0)
    return 0  # leaves its children running: the supervisor must clear them


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    sys.exit(supervise(*rest) if role == "supervise" else serve(*rest))
