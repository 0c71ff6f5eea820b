"""What ``sovereign serve`` shows on the terminal while it starts and stops.

The server process reports its steps as JSON lines on a pipe to the supervisor (``Reporter``); everything else it
and Ray print goes to the log file under ``var/log/``. The supervisor draws the steps (``Terminal``): on a terminal a
spinner with the step and its elapsed time, then a tick and how long it took; elsewhere (a file, journald) one line
per step.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console
from rich.status import Status

Kind = Literal["begin", "update", "end", "say", "note", "fail", "exit"]


class Event(BaseModel):
    """``begin`` a step, ``update`` its detail, ``end`` it (``seconds`` it took); ``say`` lines (the banner), ``note``
    something cut short or cleaned up, ``fail`` with the reason; ``exit``: the server is about to exit with ``code``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    text: str = ""
    seconds: float | None = None
    code: int | None = None


class Reporter:
    """The server's side: events go to the supervisor's pipe (when there is one) and, as plain lines, to stderr,
    which is the log file. A supervisor that has gone is no reason to fail: what it would have shown is logged."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        if fd is not None:
            os.set_inheritable(fd, False)  # Ray's processes must not hold the pipe open after this one exits
        self._began: float | None = None

    def _send(self, event: Event) -> None:
        if event.kind in {"begin", "end", "note", "fail", "exit"}:
            print(
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} sovereign serve: {event.kind}: {event.text or event.code}",
                file=sys.stderr,
                flush=True,
            )
        if self._fd is None:
            if event.kind in {"say", "fail"}:
                print(event.text, flush=True)
            return
        try:
            os.write(self._fd, event.model_dump_json(exclude_none=True).encode() + b"\n")
        except OSError:
            self._fd = None

    def begin(self, text: str) -> None:
        self._began = time.monotonic()
        self._send(Event(kind="begin", text=text))

    def update(self, text: str) -> None:
        self._send(Event(kind="update", text=text))

    def end(self, text: str) -> float:
        seconds = time.monotonic() - (self._began or time.monotonic())
        self._send(Event(kind="end", text=text, seconds=round(seconds, 1)))
        return seconds

    def say(self, text: str) -> None:
        self._send(Event(kind="say", text=text))

    def note(self, text: str) -> None:
        self._send(Event(kind="note", text=text))

    def fail(self, text: str) -> None:
        self._send(Event(kind="fail", text=text))

    def exit(self, code: int) -> None:
        self._send(Event(kind="exit", code=code))


def parse(line: bytes) -> Event | None:
    try:
        return Event.model_validate_json(line)
    except ValidationError:
        return None


class Terminal:
    """The supervisor's side. Nothing here may stop the supervisor: a terminal that went away is ignored."""

    def __init__(self, console: Console | None = None, errors: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.errors = errors or (Console(stderr=True, highlight=False, soft_wrap=True) if console is None else console)
        self.failed = False  # a reason for the failure has been shown
        self._status: Status | None = None
        self._step = ""
        self._detail = ""
        self._began = 0.0

    def _print(self, text: str, style: str | None = None, console: Console | None = None) -> None:
        with contextlib.suppress(OSError, ValueError):
            (console or self.console).print(text, style=style, markup=False)

    def _stop_spinner(self) -> None:
        if self._status is not None:
            with contextlib.suppress(OSError, ValueError):
                self._status.stop()
            self._status = None

    def _spin(self, detail: str = "") -> None:
        if not self.console.is_terminal:
            return
        text = f"{self._step}{f': {detail}' if detail else ''} ({time.monotonic() - self._began:.0f} s)"
        with contextlib.suppress(OSError, ValueError):
            if self._status is None:
                self._status = self.console.status(text, spinner="dots")
                self._status.start()
            else:
                self._status.update(text)
        self._detail = detail

    def show(self, event: Event) -> None:
        if event.kind == "begin":
            self._stop_spinner()
            self._step, self._began, self._detail = event.text, time.monotonic(), ""
            if self.console.is_terminal:
                self._spin()
            else:
                self._print(f"  {event.text}...")
        elif event.kind == "update":
            self._spin(event.text)
        elif event.kind == "end":
            self._stop_spinner()
            self._print(f"✓ {event.text} ({event.seconds or 0:.1f} s)", style="green")
        elif event.kind == "say":
            self._stop_spinner()
            self._print(event.text)
        elif event.kind == "note":
            self._print(f"! {event.text}", style="yellow")
        elif event.kind == "fail":  # on stderr, where scripts look for the reason
            self._stop_spinner()
            self.failed = True
            self._print(f"✗ {event.text}", style="bold red", console=self.errors)

    def tick(self) -> None:
        """Called a few times a second: keeps the elapsed time on the spinner current."""
        if self._status is not None:
            self._spin(self._detail)

    def say(self, text: str) -> None:
        self.show(Event(kind="say", text=text))

    def note(self, text: str) -> None:
        self.show(Event(kind="note", text=text))

    def fail(self, text: str) -> None:
        self.show(Event(kind="fail", text=text))

    def close(self) -> None:
        self._stop_spinner()
