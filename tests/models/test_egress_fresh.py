"""The fresh held-out sets of the egress review: never read by training while held out, and scored by their own
command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from models.egress_data import fresh_held_out, fresh_sets, handwritten, splits
from models.egress_fresh import main
from routing.egress_review import CATEGORIES
from tests.support import wheel_minilm


@pytest.mark.parametrize("name", fresh_sets())
def test_a_fresh_set_is_twins_in_every_category(name: str) -> None:
    items = fresh_held_out(name)
    assert len(items) == 350
    groups = Counter(item.group for item in items)
    assert set(groups.values()) == {2}
    for group in groups:
        pair = [item for item in items if item.group == group]
        assert sorted(item.sensitive for item in pair) == [False, True]
        assert pair[0].categories == pair[1].categories
    assert Counter(item.categories[0] for item in items if item.sensitive) == {c: 25 for c in CATEGORIES}


def test_no_training_run_reads_a_fresh_set_while_it_is_held_out() -> None:
    assert fresh_sets()[0] == "held_out_2"
    written = {item.text for item in handwritten()}
    split = splits()
    for name in fresh_sets():
        fresh = {item.group for item in fresh_held_out(name)}
        assert all(group.startswith(f"{name}:h") for group in fresh)
        assert not any(item.text in written for item in fresh_held_out(name))
        assert not fresh & {item.group for item in split["train"] + split["held_out"]}
        data = splits(held_out=name)
        assert not fresh & {item.group for item in data["train"]}
        assert {item.group for item in data["held_out"]} == fresh


def test_holding_out_the_newest_set_trains_on_the_older_ones() -> None:
    if len(fresh_sets()) < 2:
        pytest.skip("one fresh set")
    older, newest = fresh_sets()[-2], fresh_sets()[-1]
    train = {item.group for item in splits(held_out=newest)["train"]}
    assert {item.group for item in fresh_held_out(older)} <= train


def test_the_score_command_reports_the_review_alone_and_after_the_rules(tmp_path: Path, capsys) -> None:
    out = tmp_path / "fresh.json"
    assert main(["--set", "held_out_2", "--model", str(wheel_minilm()), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result == json.loads(capsys.readouterr().out)
    assert result["set"] == "held_out_2" and result["items"] == 350 and len(result["artefact_digest"]) == 64
    for view in ("review_alone", "rules_then_review"):
        assert result[view]["recall"]["n"] == result[view]["false_positive_rate"]["n"] == 175
        assert set(result[view]["recall_by_category"]) == set(CATEGORIES)
    # the rules can only add: an item the review keeps local stays local
    for rate in ("recall", "false_positive_rate"):
        assert result["rules_then_review"][rate]["kept_local"] >= result["review_alone"][rate]["kept_local"]
