"""``sovereign bench classify-worst`` builds its bodies deterministically, at the size asked, and runs end to end."""

from __future__ import annotations

import json

from benchmarks.classify_worst import main, worst_case_bodies

SHAPES = {
    "digits_run",
    "digit_groups",
    "valid_nhs_numbers",
    "dense_identifiers",
    "table_lines",
    "case_titles",
    "wrapped_lines",
    "spaced_out",
    "accented_text",
    "quoted_printable",
    "other_script_text",
    "ocr_digits",
    "token_ids_small",
    "token_ids_long",
    "token_id_batches",
    "short_strings",
    "short_keys",
    "deep_nesting",
    "many_messages",
    "escaped_tool_arguments",
}


def test_bodies_fill_the_size_without_passing_it() -> None:
    for size in (4096, 65536):
        bodies = worst_case_bodies(size)
        assert set(bodies) == SHAPES
        for shape, (endpoint, body) in bodies.items():
            length = len(json.dumps(body).encode())
            assert size * 0.85 <= length <= size, (shape, length)
            assert endpoint in {"chat", "completions", "embeddings"} and body["model"]
    assert worst_case_bodies(4096) == worst_case_bodies(4096)


def test_deep_nesting_stays_under_the_classifiers_depth_limit() -> None:
    from routing.classify import MAX_DEPTH, classify_request

    _, body = worst_case_bodies(8192)["deep_nesting"]
    assert classify_request(body, deadline_s=10).signals == ()  # scanned, not refused as unscannable
    assert MAX_DEPTH >= 64


def test_bench_writes_the_figures(tmp_path) -> None:
    out = tmp_path / "worst.json"
    assert main(["--json", str(out), "--size-bytes", "4096", "--runs", "1", "--shape", "digit_groups"]) == 0
    (figures,) = json.loads(out.read_text()).values()
    assert figures["bytes"] <= 4096 and figures["p50_ms"] >= 0 and figures["level"]
