"""A CPU hog beside a benchmark target: ``python -m benchmarks.hog SWITCH -- COMMAND...``.

Forks a child that busy-loops at nice 0 on the CPUs listed in the file SWITCH while it exists (and sleeps while it
does not), then becomes COMMAND. The hog shares the target's session and so, with the kernel's autogroup
scheduling, its scheduling group: the kind of load the target's own nice-0 processes (Ray's GCS, raylet, agents)
put on it. Since run Q that session is the benchmark's own (``processes.start_process``), so the load generator is
in the group too; before, each target had a session of its own, shared with its hog.
The child exits when the target does (its parent changes).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from serving.placement import parse_cpus

SLICE_S = 0.2


def spin(switch: Path, parent: int) -> None:
    while os.getppid() == parent:
        try:
            cpus = parse_cpus(switch.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(SLICE_S)
            continue
        if cpus:
            os.sched_setaffinity(0, cpus)
        deadline = time.monotonic() + SLICE_S
        while time.monotonic() < deadline:
            pass


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m benchmarks.hog SWITCH -- COMMAND...", file=sys.stderr)
        return 2
    switch, command = Path(argv[0]), argv[2:]
    parent = os.getpid()
    if os.fork() == 0:
        try:
            spin(switch, parent)
        finally:
            os._exit(0)
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
