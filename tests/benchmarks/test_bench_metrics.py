"""Metric maths on synthetic inputs: percentiles, TPOT, goodput, vLLM field names."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.metrics import RequestResult, aggregate, is_good, parse_goodput, per_request_rows, percentile


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_matches_numpy(values, p):
    assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)), rel=1e-9, abs=1e-6)


def test_percentile_empty_is_zero():
    assert percentile([], 99) == 0.0


def ok(ttft, latency, out, itl=(), prompt=10):
    return RequestResult(True, 0.0, ttft, list(itl), latency, prompt, out, True)


def test_tpot_excludes_first_token():
    assert ok(0.1, 1.1, 11).tpot == pytest.approx(0.1)
    assert ok(0.1, 0.1, 1).tpot == 0.0


def test_aggregate_fields_and_values():
    results = [
        ok(0.1, 1.1, 11, [0.1] * 10),
        ok(0.3, 2.3, 21, [0.1] * 20),
        RequestResult(False, error_kind="http_503"),
        RequestResult(False, error_kind="timeout"),
        RequestResult(False, error_kind="http_503"),
    ]
    s = aggregate(results, duration_s=4.0, goodput={"ttft": 200})
    assert s["completed"] == 2 and s["failed"] == 3
    assert s["failures_by_kind"] == {"http_503": 2, "timeout": 1}
    assert s["total_input_tokens"] == 20 and s["total_output_tokens"] == 32
    assert s["output_throughput"] == pytest.approx(8.0)
    assert s["request_throughput"] == pytest.approx(0.5)
    assert s["total_token_throughput"] == pytest.approx(13.0)
    assert s["request_goodput"] == pytest.approx(0.25)  # only the first meets ttft <= 200 ms
    assert s["median_ttft_ms"] == pytest.approx(200.0)
    assert s["mean_tpot_ms"] == pytest.approx(100.0)
    assert s["p99_itl_ms"] == pytest.approx(100.0)
    assert s["p90_e2el_ms"] == pytest.approx(float(np.percentile([1100, 2300], 90)))
    for name in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std", "p50", "p90", "p99"):
            assert f"{stat}_{name}_ms" in s


def test_aggregate_without_goodput_and_custom_percentiles():
    s = aggregate([ok(0.1, 0.5, 5)], 1.0, None, percentiles=(95, 99.9))
    assert s["request_goodput"] is None
    assert "p95_ttft_ms" in s and "p99.9_ttft_ms" in s


def test_aggregate_all_failed_is_finite():
    s = aggregate([RequestResult(False, error_kind="connection")], 1.0)
    assert s["completed"] == 0 and s["median_ttft_ms"] == 0.0 and s["output_throughput"] == 0.0


def test_goodput_parsing_and_judgement():
    assert parse_goodput(["ttft:500", "tpot:50"]) == {"ttft": 500.0, "tpot": 50.0}
    for bad in (["ttft"], ["foo:1"], ["ttft:-1"]):
        with pytest.raises(ValueError):
            parse_goodput(bad)
    r = ok(0.4, 1.4, 11)  # tpot 100 ms
    assert is_good(r, {"ttft": 500})
    assert not is_good(r, {"ttft": 500, "tpot": 50})
    assert is_good(r, {"e2el": 1400.0001})
    assert not is_good(RequestResult(False), {})


def test_rows_hold_no_text_and_round_trip_times():
    (row,) = per_request_rows([ok(0.25, 1.0, 4, [0.25] * 3)])
    assert row["ttft_ms"] == 250.0 and row["e2el_ms"] == 1000.0 and row["tpot_ms"] == 250.0
    assert not math.isnan(row["mean_itl_ms"])
    assert set(row) >= {"success", "output_tokens", "error_kind"}


def test_deliveries_group_events_that_arrive_together():
    from benchmarks.metrics import delivery_sizes

    assert delivery_sizes([]) == [1]  # one token event
    assert delivery_sizes([0.035] * 3) == [1, 1, 1, 1]  # a smooth stream: every token its own delivery
    # a batching server: 2 events, then bursts of 4 every 150 ms (gaps between events of one write are ~10 us)
    assert delivery_sizes([0.03, 0.15, 1e-5, 1e-5, 1e-5, 0.15, 2e-5]) == [1, 1, 4, 2]


def test_smoothness_figures_in_the_summary():
    smooth = [ok(0.1, 0.1 + 3 * 0.035, 4, [0.035] * 3) for _ in range(2)]
    s = aggregate(smooth, duration_s=1.0)
    assert s["deliveries"] == 8
    assert s["multi_token_event_share"] == 0.0
    assert s["mean_tokens_per_event"] == 1.0
    assert s["p90_itl_ms"] == pytest.approx(35.0)
    bursty = [ok(0.1, 0.4, 8, [0.03, 0.15, 1e-5, 1e-5, 1e-5, 0.15, 2e-5])]
    s = aggregate(bursty, duration_s=1.0)
    assert s["multi_token_event_share"] == pytest.approx(0.5)  # 2 of its 4 deliveries carried several tokens
    assert s["mean_tokens_per_event"] == pytest.approx(2.0)
    # one event whose text holds several tokens (usage says 8, the client saw 4 events, all apart)
    assert aggregate([ok(0.1, 0.4, 8, [0.1] * 3)], 1.0)["mean_tokens_per_event"] == pytest.approx(2.0)
    assert aggregate([], 1.0)["multi_token_event_share"] == 0.0


def test_the_table_shows_smoothness():
    from benchmarks.loadgen import format_table

    table = format_table(aggregate([ok(0.1, 0.4, 8, [0.03, 0.15, 1e-5, 1e-5, 1e-5, 0.15, 2e-5])], 1.0))
    assert "P90 ITL (ms):" in table
    line = next(ln for ln in table.splitlines() if ln.startswith("Deliveries with >1 token event (share):"))
    assert line.endswith(" 0.500")
