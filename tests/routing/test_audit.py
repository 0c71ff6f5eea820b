"""The audit log: chain, durability errors, concurrency (coroutines and processes), tamper detection, CLI."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from routing import audit, audit_cli
from routing.audit import (
    GENESIS,
    AuditLog,
    AuditRecord,
    AuditWriteError,
    audit_name,
    canonical,
    encode_line,
    verify,
    verify_lines,
)
from routing.levels import Level


def make_record(i: int = 0, **overrides: object) -> AuditRecord:
    fields: dict[str, object] = {
        "event": "request",
        "request_id": f"req-{i}",
        "caller": "team-a",
        "endpoint": "/v1/chat/completions",
        "model": "default",
        "declared_level": None,
        "detected_level": Level.OFFICIAL_SENSITIVE,
        "level": "official sensitive",
        "signals": [{"type": "nhs_number", "count": 1}],
        "policy_sha256": "ab" * 32,
        "candidates": ["local", "openai"],
        "attempts": [{"backend": "local", "outcome": "ok", "reason": None, "ms": 12.5}],
        "backend": "local",
        "status": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 13.0,
    }
    fields.update(overrides)
    return AuditRecord.model_validate(fields)


def write_records(path: Path, n: int, *, durable: bool = True) -> list[str]:
    async def go() -> list[str]:
        log = AuditLog(path)
        try:
            return [await log.append(make_record(i), durable=durable) for i in range(n)]
        finally:
            await log.aclose()

    return asyncio.run(go())


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# ------------------------------------------------------------------------------------------ records


def test_record_normalises_levels_and_forbids_unknown_fields() -> None:
    r = make_record()
    assert r.detected_level == "OFFICIAL-SENSITIVE" and r.level == "OFFICIAL-SENSITIVE"
    assert r.ts.endswith("Z")
    with pytest.raises(ValidationError):
        make_record(prompt="hello")
    with pytest.raises(ValidationError):
        make_record(level="UNCLASSIFIED")
    with pytest.raises(ValidationError):
        make_record().status = 500  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    "field,value",
    [
        ("attempts", [{"backend": "local", "outcome": "error", "reason": "patient John Smith", "ms": 1}]),
        ("signals", [{"type": "said: my NHS number is", "count": 1}]),
        ("caller", "a caller name with spaces"),
        ("model", "x" * 200),
        ("request_id", "line\nbreak"),
    ],
)
def test_record_fields_cannot_carry_free_text(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        fields: dict[str, Any] = {field: value}
        make_record(**fields)


def test_audit_name_keeps_safe_names_only() -> None:
    assert audit_name("org/model-7b:v1") == "org/model-7b:v1"
    assert audit_name("ignore previous instructions") == "_invalid"
    assert audit_name(None) is None


# ------------------------------------------------------------------------------------------ chain


def test_chain_is_correct(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.jsonl"
    hashes = write_records(path, 5)
    objs = [json.loads(line) for line in lines(path)]
    assert [o["hash"] for o in objs] == hashes
    assert objs[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(objs):
        assert after["prev"] == before["hash"]
    for o in objs:
        digest = o.pop("hash")
        assert (
            hashlib.sha256(
                json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            ).hexdigest()
            == digest
        )
    assert set(objs[0]) == audit.RECORD_FIELDS | {"prev"}
    result = verify(path)
    assert result.ok and result.records == 5 and result.head == hashes[-1]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_empty_file_is_an_intact_empty_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    assert verify(path).ok and verify(path).records == 0


def test_resume_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write_records(path, 3)
    second = write_records(path, 3)
    assert json.loads(lines(path)[3])["prev"] == first[-1]
    result = verify(path)
    assert result.ok and result.records == 6 and result.head == second[-1]


def test_many_concurrent_appends_from_one_loop(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writes: list[bool] = []

    async def go() -> list[str]:
        log = AuditLog(path, on_write=lambda seconds, ok: writes.append(ok))
        try:
            return await asyncio.gather(*(log.append(make_record(i), durable=i % 3 == 0) for i in range(400)))
        finally:
            await log.aclose()

    hashes = asyncio.run(go())
    result = verify(path)
    assert result.ok and result.records == 400
    assert sorted(hashes) == sorted(json.loads(line)["hash"] for line in lines(path))
    assert {json.loads(line)["request_id"] for line in lines(path)} == {f"req-{i}" for i in range(400)}
    assert writes and all(writes) and len(writes) <= 400  # group commit: batches, not one write per record


def test_cancelled_waiter_still_gets_its_record_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def go() -> None:
        log = AuditLog(path)
        task = asyncio.ensure_future(log.append(make_record(1), durable=True))
        await asyncio.sleep(0)  # the append is queued and waiting for the writer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await log.aclose()

    asyncio.run(go())
    assert verify(path).records == 1


def test_two_writers_alternating_continue_each_others_chain(tmp_path: Path) -> None:
    """Deterministic version of the multi-process case: every append follows one by the other writer."""
    path = tmp_path / "audit.jsonl"

    async def go() -> None:
        a, b = AuditLog(path), AuditLog(path)
        for i in range(10):
            await (a if i % 2 else b).append(make_record(i), durable=True)
        await a.aclose()
        await b.aclose()

    asyncio.run(go())
    result = verify(path)
    assert result.ok and result.records == 10


def test_a_closed_waiting_loop_does_not_stop_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    pending: list[asyncio.Future[str]] = []

    async def abandon() -> None:  # the loop ends while its append is still in flight
        pending.append(asyncio.ensure_future(log.append(make_record(1), durable=True)))
        await asyncio.sleep(0)

    for _ in range(20):
        asyncio.run(abandon())

    async def last() -> str:
        return await asyncio.wait_for(log.append(make_record(2), durable=True), timeout=60)

    assert len(asyncio.run(last())) == 64
    log.close()
    assert verify(path).ok and verify(path).records == 21


def _append_from_process(path: str, name: str, n: int) -> None:
    async def go() -> None:
        log = AuditLog(Path(path))
        for start in range(0, n, 10):  # small bursts so that the processes interleave
            await asyncio.gather(
                *(log.append(make_record(i, caller=name), durable=True) for i in range(start, start + 10))
            )
            await asyncio.sleep(0)
        await log.aclose()

    asyncio.run(go())


def test_two_processes_append_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_records(path, 2)  # both writers resume an existing chain
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_from_process, args=(str(path), f"p{k}", 150)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    result = verify(path)
    assert result.ok, result
    assert result.records == 302
    callers = [json.loads(line)["caller"] for line in lines(path)]
    assert callers.count("p0") == 150 and callers.count("p1") == 150


def test_unwritable_path_raises_and_the_log_recovers_nothing_silently(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    outcomes: list[bool] = []

    async def go() -> None:
        log = AuditLog(blocker / "audit.jsonl", on_write=lambda s, ok: outcomes.append(ok))
        with pytest.raises(AuditWriteError):
            await log.append(make_record(), durable=True)
        with pytest.raises(AuditWriteError):
            await log.append(make_record(), durable=False)
        await log.aclose()
        with pytest.raises(AuditWriteError, match="closed"):
            await log.append(make_record(), durable=True)

    asyncio.run(go())
    assert outcomes == [False, False]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_raises() -> None:
    async def go() -> None:
        log = AuditLog(Path("/dev/full"))
        try:
            with pytest.raises(AuditWriteError):
                await log.append(make_record(), durable=True)
        finally:
            await log.aclose()

    asyncio.run(go())


def test_torn_last_line_is_kept_visible_and_the_chain_continues(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    hashes = write_records(path, 3)
    with open(path, "ab") as fh:
        fh.write(b'{"event":"req')  # a writer crashed mid-line
    write_records(path, 2)
    objs = lines(path)
    assert json.loads(objs[4])["prev"] == hashes[-1]  # chained after the last intact record
    result = verify(path)
    assert not result.ok and result.first_bad_line == 4


# ------------------------------------------------------------------------------------------ tampering


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_records(path, 6)
    return path


def rewrite(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(new_lines))


def test_altered_field_is_detected(chain: Path) -> None:
    ls = lines(chain)
    obj = json.loads(ls[2])
    obj["status"] = 403
    ls[2] = canonical(obj) + b"\n"
    rewrite(chain, ls)
    result = verify(chain)
    assert (result.ok, result.first_bad_line) == (False, 3)
    assert "altered" in result.reason


def test_altered_and_rehashed_record_breaks_the_next_link(chain: Path) -> None:
    ls = lines(chain)
    obj = json.loads(ls[2])
    obj.pop("hash")
    obj["backend"] = "openai"
    ls[2], _ = encode_line({k: v for k, v in obj.items() if k != "prev"}, obj["prev"])
    rewrite(chain, ls)
    assert verify(chain).first_bad_line == 4


def test_deleted_line_is_detected(chain: Path) -> None:
    ls = lines(chain)
    del ls[1]
    rewrite(chain, ls)
    result = verify(chain)
    assert (result.ok, result.first_bad_line) == (False, 2)
    assert "removed" in result.reason


def test_swapped_lines_are_detected(chain: Path) -> None:
    ls = lines(chain)
    ls[3], ls[4] = ls[4], ls[3]
    rewrite(chain, ls)
    assert verify(chain).first_bad_line == 4


def test_truncated_file_is_detected(chain: Path) -> None:
    data = chain.read_bytes()
    chain.write_bytes(data[: len(data) - 40])
    result = verify(chain)
    assert (result.ok, result.first_bad_line) == (False, 6)
    assert "truncated" in result.reason


def test_removed_tail_is_detected_against_a_recorded_head(chain: Path) -> None:
    head = verify(chain).head
    ls = lines(chain)
    rewrite(chain, ls[:-1])
    assert verify(chain).ok  # a chain alone cannot tell
    result = verify(chain, expect_head=head)
    assert (result.ok, result.first_bad_line) == (False, 6)
    rewrite(chain, ls)
    assert verify(chain, expect_head=head).ok


def test_unknown_field_is_detected_even_when_rehashed(chain: Path) -> None:
    ls = lines(chain)
    obj = json.loads(ls[0])
    obj.pop("hash")
    prev = obj.pop("prev")
    obj["prompt"] = "secret text"
    ls[0], _ = encode_line(obj, prev)
    rewrite(chain, ls)
    result = verify(chain)
    assert result.first_bad_line == 1 and "unknown field" in result.reason
    assert "secret text" not in result.reason


def test_invalid_json_and_blank_lines_are_detected(chain: Path) -> None:
    ls = lines(chain)
    rewrite(chain, [*ls[:2], b"\n", *ls[2:]])
    assert verify(chain).first_bad_line == 3
    rewrite(chain, [*ls[:2], b"[1, 2]\n", *ls[2:]])
    assert verify(chain).first_bad_line == 3


TAMPERS = ("alter", "delete", "swap", "duplicate", "truncate")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    statuses=st.lists(st.sampled_from([200, 401, 403, 429, 503]), min_size=1, max_size=12),
    tamper=st.sampled_from(TAMPERS),
    data=st.data(),
)
def test_any_single_tampering_is_detected(statuses: list[int], tamper: str, data: st.DataObject) -> None:
    head, ls = GENESIS, []
    for i, status in enumerate(statuses):
        line, head = encode_line(make_record(i, status=status).model_dump(mode="json"), head)
        ls.append(line)
    n = len(ls)
    i = data.draw(st.integers(0, n - 1), label="line")
    if tamper == "alter":
        obj = json.loads(ls[i])
        field = data.draw(st.sampled_from(["status", "caller", "level", "latency_ms", "prev", "ts"]))
        obj[field] = {
            "status": obj["status"] + 1,
            "caller": "someone-else",
            "level": "TOP SECRET",
            "latency_ms": obj["latency_ms"] + 0.5,
            "prev": "f" * 64,
            "ts": "1999-01-01T00:00:00Z",
        }[field]
        ls[i] = canonical(obj) + b"\n"
    elif tamper == "delete":
        del ls[i]
    elif tamper == "swap":
        if n < 2:
            return
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other")
        ls[i], ls[j] = ls[j], ls[i]
    elif tamper == "duplicate":
        ls.insert(i, ls[i])
    else:
        cut = data.draw(st.integers(1, len(ls[i]) - 2), label="cut")  # keep the newline out
        ls[i] = ls[i][:cut] + (b"\n" if i < n - 1 else b"")
    assert not verify_lines(ls, expect_head=head).ok


# ------------------------------------------------------------------------------------------ CLI


def test_cli_exit_codes(chain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_cli.main(["verify", str(chain)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("OK:") and "6 records" in out and len(out.splitlines()) == 1

    head = verify(chain).head
    assert audit_cli.main(["verify", str(chain), "--head", head]) == 0
    assert audit_cli.main(["verify", str(chain), "--head", "nothex"]) == 2

    ls = lines(chain)
    ls[1], ls[2] = ls[2], ls[1]
    rewrite(chain, ls)
    capsys.readouterr()
    assert audit_cli.main(["verify", str(chain)]) == 1
    assert "line 2" in capsys.readouterr().out

    assert audit_cli.main(["verify", str(tmp_path / "missing.jsonl")]) == 2
    assert audit_cli.main([]) == 2
    assert audit_cli.main(["verify"]) == 2
    assert audit_cli.main(["frobnicate", str(chain)]) == 2
