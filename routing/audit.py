"""Tamper-evident audit log: one hash-chained JSON object per line, written by one thread per process.

Why this shape:

* Every line carries ``prev`` (the previous line's ``hash``; 64 zeros for the first) and ``hash``
  (SHA-256 over the canonical JSON of the line without ``hash``). Altering a record breaks its hash;
  removing or reordering records breaks the next line's ``prev``. Removing records from the *end* leaves a
  valid chain, so ``verify`` can be given the head hash an operator recorded earlier (``--head``), and it
  prints the current head.
* The request path must never block on disk, and "durable before any byte goes to a non-sovereign backend"
  needs an fsync per egress. A single writer thread drains a queue and commits every pending line with one
  write and at most one fsync (group commit), then wakes the waiting coroutines.
* Several ingress replicas on one host may share the file: each batch is written under an exclusive
  ``flock``, and a writer that finds the file grew since its own last write re-reads the last line's hash, so
  all processes extend one chain. Replicas on different hosts must use different files (one chain each,
  e.g. ``audit-<pod>.jsonl``); each file is verified on its own, and records are merged for reading by
  ``ts`` and ``request_id``, never by concatenating files (that would break ``prev`` at the seam).
* Records hold codes, levels, counts and names only: no field can carry prompt or completion text.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from routing.levels import Level

log = logging.getLogger(__name__)

GENESIS = "0" * 64
"""``prev`` of the first record of a chain."""

# Short machine codes (outcomes, reasons, signal types): no spaces, so no sentence of prompt text fits.
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
# Identifiers chosen by operators or the server (request ids, callers, backends, models, endpoints).
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@/+\-]{1,128}$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/+-")


def _level_label(value: object) -> object:
    """Store levels by their canonical label whatever form the caller passes (``Level``, ``"secret"``)."""
    if isinstance(value, Level):
        return value.label
    if isinstance(value, str):
        return Level.parse(value).label
    return value


LevelLabel = Annotated[str, BeforeValidator(_level_label)]


def utc_now() -> str:
    """The current time as an RFC 3339 UTC timestamp with microseconds: ``2025-01-31T12:00:00.123456Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_name(value: str | None) -> str | None:
    """``value`` if it is safe to record as a name (e.g. a requested model), else ``"_invalid"``.

    Use it for caller-supplied names such as an unknown ``model``: the record then never holds arbitrary text.
    """
    if value is None:
        return None
    if 0 < len(value) <= 128 and set(value) <= _NAME_CHARS:
        return value
    return "_invalid"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Signal(_Frozen):
    """A kind of sensitive content found, and how often; never the content itself."""

    type: Code
    count: int = Field(ge=0)


class Attempt(_Frozen):
    """One try of one backend: ``outcome`` and ``reason`` are short codes (``ok``, ``timeout``...)."""

    backend: Name
    outcome: Code
    reason: Code | None = None
    ms: float = Field(ge=0, allow_inf_nan=False)


class AuditRecord(_Frozen):
    """One audit event. ``prev`` and ``hash`` are added by :class:`AuditLog`, not set here.

    ``event="request"``: exactly one per request, written when it ends, whatever the outcome.
    ``event="egress"``: written durably before any byte goes to a non-sovereign backend, named in ``backend``.
    ``detected_level``/``level`` are null only when the request ended before classification (401, 413...).
    """

    ts: str = Field(default_factory=utc_now, pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
    event: Literal["egress", "request"]
    request_id: Name
    caller: Name | None
    # The caller's team (API keys' `--team`, OIDC claim rules); absent in records written before teams existed.
    team: Name | None = None
    endpoint: Name
    model: Name | None
    declared_level: LevelLabel | None
    detected_level: LevelLabel | None
    level: LevelLabel | None
    signals: tuple[Signal, ...] = ()
    policy_sha256: Hex64
    # The classifier that took the decision (routing.classify.classifier_digest); absent in records written
    # before it was recorded, which still verify.
    classifier_sha256: Hex64 | None = None
    candidates: tuple[Name, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    backend: Name | None
    status: int = Field(ge=100, le=599)
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    latency_ms: float = Field(ge=0, allow_inf_nan=False)


RECORD_FIELDS: frozenset[str] = frozenset(AuditRecord.model_fields)
LINE_FIELDS: frozenset[str] = RECORD_FIELDS | {"prev", "hash"}
# Fields added after the first records were written: a line without them is still well formed.
_LATER_FIELDS = frozenset({"classifier_sha256", "team"})


class AuditWriteError(RuntimeError):
    """The record could not be written (unwritable path, disk full, log closed): refuse the request."""


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode_line(fields: dict[str, Any], prev: str) -> tuple[bytes, str]:
    """Chain one record (``AuditRecord.model_dump(mode="json")``) after ``prev``: return (line, its hash)."""
    obj = dict(fields, prev=prev)
    digest = hashlib.sha256(canonical(obj)).hexdigest()
    obj["hash"] = digest
    return canonical(obj) + b"\n", digest


# --------------------------------------------------------------------------------------------- writer


@dataclass
class _Pending:
    fields: dict[str, Any]
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[str]


_STOP = object()
_MAX_BATCH = 4096


def _resolve(future: asyncio.Future[str], result: str | BaseException) -> None:
    """Runs on the waiter's loop. The waiter may have been cancelled meanwhile (client went away)."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _wake(pending: _Pending, result: str | BaseException) -> None:
    """Hand the result to the waiter's loop; a loop closed meanwhile must not kill the writer thread."""
    with contextlib.suppress(RuntimeError):
        pending.loop.call_soon_threadsafe(_resolve, pending.future, result)


class AuditLog:
    """Append-only, hash-chained, shared safely by coroutines, threads and processes on one host.

    ``on_write(seconds, ok)`` is called from the writer thread after every batch with the time spent writing
    (and fsyncing) it, for metrics; it must be thread-safe (Prometheus metrics are).
    """

    def __init__(self, path: Path | str, *, on_write: Callable[[float, bool], None] | None = None) -> None:
        self.path = Path(path)
        self._on_write = on_write
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._closing = threading.Lock()
        self._closed = False
        # Writer-thread state: the open file, our view of its size and of the chain's head.
        self._fd: int | None = None
        self._size = -1
        self._head = GENESIS
        self._thread = threading.Thread(target=self._run, name=f"audit-writer:{self.path.name}", daemon=True)
        self._thread.start()

    async def append(self, record: AuditRecord, *, durable: bool) -> str:
        """Append ``record`` and return its hash; with ``durable`` it is fsynced before this returns.

        Raises :class:`AuditWriteError` when the record could not be written. If the awaiting task is
        cancelled, the record is still written.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(record.model_dump(mode="json"), durable, loop, loop.create_future())
        with self._closing:
            if self._closed or not self._thread.is_alive():
                raise AuditWriteError("audit log is closed")
            self._queue.put(pending)
        return await pending.future

    def close(self) -> None:
        """Write everything queued, then stop the writer thread and close the file. Idempotent; blocks."""
        with self._closing:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    # The rest runs in the writer thread only.

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[_Pending] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _Pending)
                batch.append(item)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            hashes = self._write_batch(batch)
        except Exception as exc:
            log.error("audit write failed for %d record(s): %s", len(batch), type(exc).__name__)
            error = AuditWriteError(f"cannot write audit log {self.path}: {exc}")
            self._report(time.perf_counter() - started, ok=False)
            for p in batch:
                _wake(p, error)
            return
        self._report(time.perf_counter() - started, ok=True)
        for p, digest in zip(batch, hashes, strict=True):
            _wake(p, digest)

    def _report(self, seconds: float, *, ok: bool) -> None:
        if self._on_write is not None:
            try:
                self._on_write(seconds, ok)
            except Exception:
                log.exception("audit on_write callback failed")

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._size = -1  # unknown: read the head under the lock
            if created:  # make the new directory entry durable too
                _fsync_dir(self.path.parent)
        return self._fd

    def _write_batch(self, batch: list[_Pending]) -> list[str]:
        fd = self._open()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size != self._size:  # first batch, or another process appended: continue from its last line
                size, self._head = _resume(fd, size)
            lines, hashes, head = [], [], self._head
            for p in batch:
                line, head = encode_line(p.fields, head)
                lines.append(line)
                hashes.append(head)
            data = b"".join(lines)
            try:
                _write_all(fd, data)
                if any(p.durable for p in batch):
                    os.fsync(fd)
            except OSError:
                # Undo a partial batch so that the file still ends on a whole, chained line.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                self._size = -1
                raise
            self._head = head
            self._size = size + len(data)
            return hashes
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _resume(fd: int, size: int) -> tuple[int, str]:
    """Find the chain's head in an existing file (caller holds the lock); return (size, head hash).

    A torn last line (a crash mid-write elsewhere) is terminated with a newline so that new records start on
    their own line; it stays in the file and ``verify`` reports it. The chain continues from the last intact
    record.
    """
    if size == 0:
        return 0, GENESIS
    if os.pread(fd, 1, size - 1) != b"\n":
        log.error("audit log ends with a torn line; it is kept and `audit verify` will report it")
        _write_all(fd, b"\n")
        size += 1
    for line in _reverse_lines(fd, size):
        try:
            obj = json.loads(line)
            digest = obj["hash"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(digest, str) and len(digest) == 64:
            return size, digest
    return size, GENESIS


def _reverse_lines(fd: int, size: int, chunk: int = 65536) -> Iterator[bytes]:
    """The file's non-empty lines, last first, reading backwards in chunks (normally only the last line)."""
    end, tail = size, b""
    while end > 0:
        start = max(0, end - chunk)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        parts = tail.split(b"\n")
        tail = parts[0]  # may be incomplete until we read further back
        for part in reversed(parts[1:]):
            if part:
                yield part
    if tail:
        yield tail


# --------------------------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad_line: int | None
    reason: str
    head: str = GENESIS
    anchors_checked: int = 0


def verify(
    path: Path | str, *, expect_head: str | None = None, anchors: dict[int, str] | None = None, progress: bool = False
) -> VerifyResult:
    """Check the whole chain in ``path``: every line well formed, every hash right, every ``prev`` linked.

    ``expect_head``: a head hash recorded earlier; it must still be in the chain, which detects records
    removed from the end. ``anchors``: {line number: hash} written elsewhere while the log grew
    (``routing.audit_ship``); every anchored line must still be there with that hash, which detects records
    altered, removed or truncated away even when the whole chain was recomputed. ``progress``: a progress bar
    on stderr (when it is a terminal). Reasons never quote record content. Raises ``OSError`` when the file
    cannot be read.
    """
    return verify_lines(audit_lines(path, progress=progress, desc="verify"), expect_head=expect_head, anchors=anchors)


def audit_lines(path: Path | str, *, progress: bool = False, desc: str = "read") -> Iterator[bytes]:
    """The lines of the audit log at ``path``, read in 1 MiB blocks. ``progress``: a bar of the bytes read on stderr
    (when it is a terminal), updated every 65,536 lines (cheap per line). Raises ``OSError`` when the file cannot
    be read."""
    with open(path, "rb", buffering=1 << 20) as fh:
        if not progress:
            yield from fh
            return
        from tqdm import tqdm

        with tqdm(
            total=os.fstat(fh.fileno()).st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            file=sys.stderr,
            disable=None,
            mininterval=0.5,
        ) as bar:
            pending = 0
            for number, line in enumerate(fh, start=1):
                pending += len(line)
                if number % 65536 == 0:
                    bar.update(pending)
                    pending = 0
                yield line
            bar.update(pending)


def verify_lines(
    lines: Iterable[bytes], *, expect_head: str | None = None, anchors: dict[int, str] | None = None
) -> VerifyResult:
    """:func:`verify` over lines (each with its ``\n``), streamed: memory does not grow with the log."""
    prev, records = GENESIS, 0
    seen_head = expect_head is None
    anchors = anchors or {}
    checked = 0
    for number, raw in enumerate(lines, start=1):
        problem, digest = _check_line(raw, prev)
        if problem is not None:
            return VerifyResult(False, records, number, problem, prev, checked)
        prev, records = digest, records + 1
        seen_head = seen_head or prev == expect_head
        anchored = anchors.get(number)
        if anchored is not None:
            if anchored != digest:
                reason = "record differs from the anchored head: records up to it were altered, removed or added"
                return VerifyResult(False, records, number, reason, prev, checked)
            checked += 1
    if not seen_head:
        reason = "expected head hash not found: records were removed from the end (or this is another log)"
        return VerifyResult(False, records, records + 1, reason, prev, checked)
    if anchors and max(anchors) > records:
        reason = f"an anchor names line {max(anchors)}: anchored records were truncated away"
        return VerifyResult(False, records, records + 1, reason, prev, checked)
    return VerifyResult(True, records, None, "chain intact", prev, checked)


class _Line(AuditRecord):
    """A whole line as written: the record with its chain fields."""

    prev: Hex64
    hash: Hex64


_REQUIRED_LINE_FIELDS = LINE_FIELDS - _LATER_FIELDS


def _check_line(raw: bytes, prev: str) -> tuple[str | None, str]:
    """(why this line is bad or None, its hash) for one line that should be chained after ``prev``.

    The fast path parses and validates the line in one step (pydantic's JSON parser) and hashes its bytes
    without the ``"hash":"…",`` member: equal to the stored hash only when those bytes are the canonical JSON
    the writer hashed (a preimage). Anything else (an altered or re-serialised line) takes the slow path, which
    re-serialises canonically and names what is wrong. Both accept exactly the lines the writer produced.
    """
    fast = _fast_line(raw)
    if fast is not None:
        line_prev, digest = fast
        if line_prev != prev:
            return "prev does not match the previous record's hash: a record was removed, added or reordered", ""
        return None, digest
    return _check_line_slow(raw, prev)


def _fast_line(raw: bytes) -> tuple[str, str] | None:
    """(prev, hash) of a well-formed line whose bytes are exactly what its hash covers; None: ask the slow path."""
    if not raw.endswith(b"\n"):
        return None
    try:
        line = _Line.model_validate_json(raw)
    except ValidationError:
        return None
    if not line.model_fields_set >= _REQUIRED_LINE_FIELDS:
        return None
    member = b'"hash":"' + line.hash.encode() + b'",'  # never first or last in sorted keys
    at = raw.find(member)
    if at < 0:
        return None
    body = raw[:at] + raw[at + len(member) : -1]
    if hashlib.sha256(body).hexdigest() != line.hash:
        return None
    return line.prev, line.hash


def _check_line_slow(raw: bytes, prev: str) -> tuple[str | None, str]:
    if not raw.endswith(b"\n"):
        return "truncated line (no newline at the end of the file)", ""
    try:
        obj = json.loads(raw)
    except ValueError:
        return "not valid JSON (truncated or corrupted)", ""
    if not isinstance(obj, dict):
        return "not a JSON object", ""
    if unknown := sorted(obj.keys() - LINE_FIELDS):
        return f"unknown field(s): {', '.join(_safe_field(k) for k in unknown)}", ""
    if missing := sorted(LINE_FIELDS - _LATER_FIELDS - obj.keys()):
        return f"missing field(s): {', '.join(missing)}", ""
    digest = obj.pop("hash")
    try:
        intact = isinstance(digest, str) and hashlib.sha256(canonical(obj)).hexdigest() == digest
    except ValueError:  # e.g. a lone surrogate escaped into a string: cannot be a record we wrote
        intact = False
    if not intact:
        return "hash mismatch: the record was altered", ""
    if obj["prev"] != prev:
        return "prev does not match the previous record's hash: a record was removed, added or reordered", ""
    del obj["prev"]
    try:
        AuditRecord.model_validate(obj)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in err["loc"]) for err in exc.errors()})
        return f"invalid record field(s): {', '.join(fields)}", ""
    return None, digest


def _safe_field(key: str) -> str:
    """Field names come from the file: show them only when they look like field names."""
    return key if len(key) <= 40 and key.isidentifier() else "<unprintable>"
