"""Metamorphic tests: the corpus in every dress real documents put it in (``dresses.py``).

A sensitive item in any dress classifies at least as high as it does undressed; a benign item in a dress that
keeps its meaning stays OFFICIAL. The whole cross product gives the recall and false-positive figures of the
issue's bar (recall >= 99.5% over every dress, false positives <= 3%); hypothesis then looks for the single
item, dress and random choices that break the rule.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.classify import ERROR_SIGNAL, Classification, classify_request, classify_text
from routing.levels import Level
from tests.routing import dresses
from tests.routing.test_classify_corpus import ITEMS, caught

TEXT_ITEMS = [i for i in ITEMS if "text" in i]
SENSITIVE = [i for i in TEXT_ITEMS if i["label"] == "sensitive"]
BENIGN = [i for i in TEXT_ITEMS if i["label"] == "benign"]
# Every sensitive item that the classifier catches undressed: each must still be caught in every dress.
CAUGHT = [i for i in SENSITIVE if caught(i, classify_text(i["text"]))]


def classify(dressed: dresses.Dressed) -> Classification:
    return classify_text(dressed) if isinstance(dressed, str) else classify_request(dressed)


def test_the_corpus_has_text_items_of_both_kinds():
    assert len(SENSITIVE) >= 300 and len(BENIGN) >= 200


def test_recall_and_false_positives_over_every_dress():
    """The bar of the issue, over the whole cross product (one random draw per item and dress); and no item in any
    dress makes a rule raise (the classifier would fail closed, ``classification_error``, which hides the fault behind
    a sensitive item's expected level)."""
    missed: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    raised: list[tuple[str, str]] = []
    for name in dresses.ALL:
        for item in CAUGHT:
            original = classify_text(item["text"]).level
            dressed = classify(dresses.dress(item, name, 0))
            if ERROR_SIGNAL in {s.type for s in dressed.signals}:
                raised.append((item["id"], name))
            if dressed.level < original:
                missed[name] += 1
                examples.setdefault(name, []).append(item["id"])
        if name in dresses.NEUTRAL:
            for item in BENIGN:
                if classify(dresses.dress(item, name, 0)).local_only:
                    flagged[name] += 1
                    examples.setdefault(name, []).append(item["id"])
    assert not raised, raised[:20]
    sensitive_total = len(CAUGHT) * len(dresses.ALL)
    benign_total = len(BENIGN) * len(dresses.NEUTRAL)
    recall = 1 - sum(missed.values()) / sensitive_total
    fp_rate = sum(flagged.values()) / benign_total
    print(
        f"\nover {len(dresses.ALL)} dresses: recall {recall:.4f} ({sensitive_total} dressed sensitive items), "
        f"false positives {fp_rate:.4f} ({benign_total} dressed benign items)"
    )
    print("missed by dress:", dict(missed), "flagged by dress:", dict(flagged))
    assert recall >= 0.995, {name: ids[:10] for name, ids in examples.items()}
    assert fp_rate <= 0.03, {name: ids[:10] for name, ids in examples.items()}


@pytest.mark.parametrize("name", sorted(dresses.ALL))
def test_each_dress_on_its_own(name):
    """Per-dress recall, so that a regression names its dress."""
    missed = [i["id"] for i in CAUGHT if classify(dresses.dress(i, name, 1)).level < classify_text(i["text"]).level]
    assert len(missed) <= 0.01 * len(CAUGHT), missed[:20]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(CAUGHT) - 1), name=st.sampled_from(sorted(dresses.ALL)), seed=st.integers(0, 2**32 - 1))
def test_a_dress_never_lowers_a_sensitive_item(index, name, seed):
    item = CAUGHT[index]
    assert classify(dresses.dress(item, name, seed)).level >= classify_text(item["text"]).level


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(BENIGN) - 1),
    name=st.sampled_from(sorted(set(dresses.NEUTRAL) - {"split_parts"})),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_neutral_dress_never_raises_a_benign_item(index, name, seed):
    """A benign item that is OFFICIAL undressed stays OFFICIAL in any neutral dress. (Not split_parts: a part of
    a near-miss identifier can itself be a valid one, "QA1 1AA" split as "Q" and "A1 1AA"; the cross product
    above holds that dress to the 3% bar with the rest.)"""
    item = BENIGN[index]
    if classify_text(item["text"]).local_only:
        return  # a known false positive of the undressed corpus; the corpus test counts those
    result = classify(dresses.dress(item, name, seed))
    assert not result.local_only, (item["id"], result.signals)


def test_two_dresses_at_once():
    """Real documents stack dresses: a Word minute pasted into an HTML e-mail, forwarded as base64."""
    rng = random.Random(3)
    names = sorted(dresses.NEUTRAL)
    misses = []
    for item in CAUGHT:
        first, second = rng.sample([n for n in names if not n.startswith("split_parts")], 2)
        text = dresses.ALL[first](item["text"], rng)
        assert isinstance(text, str)
        if classify(dresses.ALL[second](text, rng)).level < classify_text(item["text"]).level:
            misses.append((item["id"], first, second))
    assert len(misses) <= 0.01 * len(CAUGHT), misses[:20]


def test_level_is_at_least_official_sensitive_for_every_caught_item_in_every_dress():
    worst = min(classify(dresses.dress(i, n, 2)).level for i in CAUGHT[:100] for n in dresses.ALL)
    assert worst >= Level.OFFICIAL_SENSITIVE
