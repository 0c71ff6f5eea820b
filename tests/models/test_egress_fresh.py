"""The fresh held-out set of the egress review: never read by training, and scored by its own command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from models.egress_data import fresh_held_out, handwritten, splits
from models.egress_fresh import main
from routing.egress_review import CATEGORIES
from tests.support import wheel_minilm


def test_the_fresh_set_is_twins_in_every_category() -> None:
    items = fresh_held_out()
    assert len(items) == 350
    groups = Counter(item.group for item in items)
    assert set(groups.values()) == {2}
    for group in groups:
        pair = [item for item in items if item.group == group]
        assert sorted(item.sensitive for item in pair) == [False, True]
        assert pair[0].categories == pair[1].categories
    assert Counter(item.categories[0] for item in items if item.sensitive) == {c: 25 for c in CATEGORIES}


def test_no_training_run_reads_the_fresh_set() -> None:
    fresh = {item.group for item in fresh_held_out()}
    assert all(group.startswith("held_out_2:h2") for group in fresh)
    read = {item.group for item in handwritten()}
    data = splits()
    read |= {item.group for item in data["train"] + data["held_out"]}
    assert not fresh & read
    assert not any(item.text in {f.text for f in fresh_held_out()} for item in handwritten())


def test_the_score_command_reports_the_review_alone_and_after_the_rules(tmp_path: Path, capsys) -> None:
    out = tmp_path / "fresh.json"
    assert main(["--model", str(wheel_minilm()), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result == json.loads(capsys.readouterr().out)
    assert result["items"] == 350 and len(result["artefact_digest"]) == 64
    for view in ("review_alone", "rules_then_review"):
        assert result[view]["recall"]["n"] == result[view]["false_positive_rate"]["n"] == 175
        assert set(result[view]["recall_by_category"]) == set(CATEGORIES)
    # the rules can only add: an item the review keeps local stays local
    for rate in ("recall", "false_positive_rate"):
        assert result["rules_then_review"][rate]["kept_local"] >= result["review_alone"][rate]["kept_local"]
