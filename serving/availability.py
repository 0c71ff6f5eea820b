"""Which local engines can serve now, from Ray Serve's own account of their replicas.

A request sent to an engine deployment with no running replica waits in Ray Serve's handle until one starts, which
after a node is lost can be never (the replica stays pending until a node offers its resources). So each router
replica asks Serve's controller every ``POLL_S`` how many replicas of each engine run, and the routing policy skips
an engine with none (``decide(..., unavailable=...)``): its requests fall back to the next cleared backend, or get
503 ``no_cleared_backend_available`` at once. What this changes is only where a request waits; an engine that may
scale to zero (``autoscaling.min_replicas: 0``) is never skipped, since a request is what starts its replicas, nor
one that has not run yet (the application starting).

Serve's controller being slow or unreachable changes nothing (the last answer stands): availability is a hint for
routing, never a decision about what may leave.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("sovereign.availability")

POLL_S = 2.0


def has_running_replica(replica_states: Mapping[str, int], min_replicas: int) -> bool:
    """Whether an engine can take a request now: a replica in the RUNNING state, or an engine that scales to zero."""
    return min_replicas == 0 or replica_states.get("RUNNING", 0) > 0


ReplicaStates = Mapping[str, Mapping[str, int]]  # deployment name -> replica state -> count


class EngineWatch:
    """A daemon thread that keeps ``backend.available`` current for each local backend. ``status(app name)``: the
    application's replica states, or None where Serve has no such application
    (``serving.thirdparty.serve_replica_states``; injected in tests); ``on_change(backend name, available)`` is called
    for each engine at the start and, after a poll, for each that changed (the router's ``sovereign_backend_available``
    gauge)."""

    def __init__(
        self,
        app_name: str,
        engines: Mapping[str, tuple[str, int, Any]],
        status: Callable[[str], ReplicaStates | None],
        poll_s: float = POLL_S,
        on_change: Callable[[str, bool], None] = lambda name, available: None,
    ) -> None:
        """``engines``: backend name -> (its deployment name, its min_replicas, the backend object)."""
        self._app = app_name
        self._engines = dict(engines)
        self._status = status
        self._poll_s = poll_s
        self._on_change = on_change
        self._reported: dict[str, bool] = {}
        self._report()
        self._none_running: set[str] = set()
        self._seen_running: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-watch", daemon=True)

    def start(self) -> EngineWatch:
        if self._engines:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        """Ask Serve once and update every engine's ``available``."""
        try:
            app = self._status(self._app)
        except Exception as exc:  # the controller busy or restarting: keep the last answer
            log.debug("serve status unavailable: %s", type(exc).__name__)
            app = None
        if app is not None:
            self._update(app)
        self._report()

    def _update(self, app: ReplicaStates) -> None:
        for name, (deployment, min_replicas, backend) in self._engines.items():
            states = app.get(deployment)
            if states is None:
                continue
            running = has_running_replica(states, min_replicas)
            # Skipped after two answers in a row with none running (a snapshot taken just before a replica came
            # up must not take a working engine out), and only once it has run: while the application starts, a
            # request waits for the engine as it always has. Back at once on an answer with a replica running.
            down = not running and name in self._none_running and name in self._seen_running
            if running:
                self._none_running.discard(name)
                self._seen_running.add(name)
            else:
                self._none_running.add(name)
            if running and not backend.available:
                log.warning("engine has a running replica again", extra={"backend": name})
                backend.available = True
            elif down and backend.available:
                log.warning(
                    "engine has no running replica: its requests go to the next cleared backend or get 503",
                    extra={"backend": name},
                )
                backend.available = False

    def _report(self) -> None:
        """``on_change`` for each engine whose ``available`` differs from what was last reported (the backend sets
        it too, when a readiness check reaches a replica)."""
        for name, (_, _, backend) in self._engines.items():
            if self._reported.get(name) != backend.available:
                self._reported[name] = backend.available
                self._on_change(name, backend.available)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.poll()
