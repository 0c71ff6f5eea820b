"""Recall and false-positive rate on the labelled evaluation corpus in ``corpus/``.

Four files: ``generated.jsonl`` (faker en_GB, see ``generate.py``), ``handwritten.jsonl``,
``public_sources.jsonl`` (examples transcribed from Presidio's UK recognizer tests and the Ministry of
Justice's hmpps-person-record PNC/CRO tests, each naming its file) and ``documents.jsonl`` (content as
documents deliver it: CRLF, HTML, XML, JSON, CSV, capitals, diacritics, glued identifiers, images and token
ids; written after the detectors were built, sensitive items with benign twins). An item is a text or a request body,
labelled ``sensitive`` (with the signal and minimum level it must produce) or ``benign``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from routing.classify import Classification, classify_request, classify_text
from routing.levels import Level

CORPUS = Path(__file__).parent / "corpus"
FILES = ("generated.jsonl", "handwritten.jsonl", "public_sources.jsonl", "documents.jsonl")


def load() -> list[dict[str, Any]]:
    items = []
    for name in FILES:
        for line in (CORPUS / name).read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            if "_comment" not in item:
                items.append(item | {"file": name})
    return items


ITEMS = load()


def classify(item: dict[str, Any]) -> Classification:
    return classify_text(item["text"]) if "text" in item else classify_request(item["request"])


def caught(item: dict[str, Any], c: Classification) -> bool:
    return c.level >= Level.parse(item["level"]) and item["signal"] in {s.type for s in c.signals}


def test_corpus_is_large_labelled_and_sourced():
    assert len(ITEMS) >= 500
    assert len({i["id"] for i in ITEMS}) == len(ITEMS)
    for item in ITEMS:
        assert item["label"] in {"sensitive", "benign"}
        assert item["source"]
        assert ("text" in item) != ("request" in item)
        if item["label"] == "sensitive":
            Level.parse(item["level"])
    sources = " ".join(i["source"] for i in ITEMS)
    assert "presidio" in sources.lower() and "hmpps-person-record" in sources


def test_every_signal_type_has_sensitive_items():
    per_type = Counter(i["signal"] for i in ITEMS if i["label"] == "sensitive")
    expected = {
        "marking_official_sensitive",
        "marking_secret",
        "marking_top_secret",
        "marking_caveat",
        "marking_legacy_restricted",
        "marking_legacy_confidential",
        "nhs_number",
        "ni_number",
        "pnc_id",
        "cro_number",
        "prison_number",
        "probation_crn",
        "uk_passport",
        "driving_licence",
        "sort_code_account",
        "iban",
        "payment_card",
        "utr",
        "email",
        "uk_phone",
        "uk_postcode",
        "date_of_birth",
        "justice_context_named_person",
    }
    assert expected <= set(per_type), expected - set(per_type)
    assert all(per_type[t] >= 5 for t in expected), per_type


def test_recall_and_false_positive_rate():
    sensitive = [i for i in ITEMS if i["label"] == "sensitive"]
    benign = [i for i in ITEMS if i["label"] == "benign"]
    missed = [i["id"] for i in sensitive if not caught(i, classify(i))]
    flagged = [i["id"] for i in benign if classify(i).local_only]
    recall = 1 - len(missed) / len(sensitive)
    fp_rate = len(flagged) / len(benign)
    print(f"\nrecall {recall:.4f} ({len(sensitive)} sensitive), false positives {fp_rate:.4f} ({len(benign)} benign)")
    assert recall >= 0.995, missed
    assert fp_rate <= 0.03, flagged


@pytest.mark.parametrize("name", FILES)
def test_each_file_on_its_own(name):
    """Per-file figures, so a regression says where it is."""
    items = [i for i in ITEMS if i["file"] == name]
    sensitive = [i for i in items if i["label"] == "sensitive"]
    benign = [i for i in items if i["label"] == "benign"]
    assert sum(caught(i, classify(i)) for i in sensitive) >= 0.99 * len(sensitive)
    assert sum(classify(i).local_only for i in benign) <= 0.05 * len(benign)
