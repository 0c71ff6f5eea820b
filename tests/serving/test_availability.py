"""Engines without a running replica are skipped by the routing (serving/availability.py), from Serve's status."""

from __future__ import annotations

from typing import Any

from serving.availability import EngineWatch, has_running_replica


def test_running_replicas_and_scale_to_zero() -> None:
    assert has_running_replica({"RUNNING": 1}, min_replicas=1)
    assert not has_running_replica({"STARTING": 1}, min_replicas=1)
    assert not has_running_replica({}, min_replicas=1)
    assert has_running_replica({}, min_replicas=0)  # a request is what starts its replicas


class _Backend:
    available = True


def test_the_watch_follows_serve_and_keeps_its_last_answer_when_serve_cannot_say() -> None:
    answers: list[Any] = []

    def status(app: str) -> Any:
        assert app == "app"
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    local, scaled = _Backend(), _Backend()
    reported: list[tuple[str, bool]] = []
    watch = EngineWatch(
        "app",
        {"local": ("engine-local", 1, local), "scaled": ("engine-scaled", 0, scaled)},
        status,
        on_change=lambda name, up: reported.append((name, up)),
    )
    lost = {"engine-local": {"PENDING_ALLOCATION": 1}, "engine-scaled": {}}
    back = {"engine-local": {"RUNNING": 1}, "engine-scaled": {}}
    answers += [lost, lost, back, lost, lost, TimeoutError(), None, back, lost, back]
    watch.poll()
    watch.poll()
    assert local.available is True  # not yet run: the application is starting, requests wait for it
    watch.poll()
    watch.poll()
    assert local.available is True  # one answer with none running is not enough
    watch.poll()
    assert (local.available, scaled.available) == (False, True)
    watch.poll()  # the controller did not answer
    watch.poll()  # the application is not there (yet, or any more)
    assert local.available is False
    watch.poll()
    assert local.available is True  # back at once
    watch.poll()
    watch.poll()
    assert local.available is True  # a single snapshot without a running replica, between two with one
    # The gauge: both engines up at the start, then local's down and back; a readiness check that reaches a replica
    # sets ``available`` itself, and the next poll reports it.
    assert reported == [("local", True), ("scaled", True), ("local", False), ("local", True)]
    local.available = False
    answers.append(None)
    watch.poll()
    assert reported[-1] == ("local", False)
