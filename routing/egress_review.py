"""The egress review: a second opinion, from a local model that reads meaning, before a request leaves the boundary.

The rules (``routing.classify``) see markings and identifiers; this sees what a text is about. It runs only where a
request the rules call OFFICIAL is about to go to a non-sovereign backend, and its verdict can only raise the level.
Pure and synchronous: no Ray, no HTTP, no clock except the deadline.

The model is MiniLM (all-MiniLM-L6-v2, the embedding model the app already serves), used as static token
embeddings: each vocabulary token's embedding was computed once by the transformer (``models/egress_train.py``), and
a window of tokens is read as the mean of its tokens' embeddings. A small trained head scores each window: one hidden
layer over that mean and the window's density of per-word specificity flags (``FEATURES``: what tells a real case
from general text on the same topic), plus a weight per word piece and per (hashed) pair of neighbouring word
pieces; the text's score is its highest window's (all of a request's strings, read together, in windows of 64
tokens at a stride of 32). The artefact may average several such heads (side by side in the same table).
The head's first layer is linear, so it is folded into the token table when the artefact is written: the artefact
holds, per token, that layer's output for the token's embedding, and a window's hidden layer is the mean of those
rows (plus a prior, below) through a ReLU. The full transformer over a 2,000-token request takes 150-400 ms on a
2-core CPU; this takes one to a few milliseconds. Where the head is least sure (its top window's logit within a
band around the threshold) and the artefact has one, a second stage reads that one window with the transformer
itself (``routing.egress_context``; its cost is in benchmarks/RESULTS.md).

A window of ``n`` tokens is smoothed towards the mean token of the training corpus with weight ``prior_weight``
(``(sum + c * prior) / (n + c)``): a text of three tokens is mostly "an average text" and only slightly itself, so
short greetings and one-word questions do not swing the score on noise.

The artefact (a folder) holds ``config.json`` (windows, prior weight, threshold, categories, the SHA-256 of each
MiniLM file the table was distilled from, the second stage's band, and the evaluation figures), ``head.safetensors``
(the folded table, the rest of the head and the second stage's regression) and ``manifest.sha256.json`` (the SHA-256
of both, written by ``models.manifest``). ``load`` verifies the artefact against its manifest and the model folder
against the digests the artefact recorded (and against the folder's own manifest when it has one), and uses the
model folder's tokenizer (and its transformer, for the second stage).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import re2

from models.manifest import MANIFEST_NAME, ManifestError, sha256_file, verify_manifest
from routing import normalize
from routing.classify import Classification, Signal
from routing.egress_context import ContextualStage, load_transformer
from routing.levels import Level

__all__ = [
    "CATEGORIES",
    "DEFAULT_ARTEFACT",
    "FEATURES",
    "UNAVAILABLE_SIGNAL",
    "ArtefactError",
    "EgressReviewer",
    "Review",
    "ReviewError",
    "default_model_dir",
    "raise_level",
    "reading_views",
    "request_texts",
    "segment_windows",
    "tokens_and_flags",
    "word_flags",
]

DEFAULT_ARTEFACT = Path(__file__).resolve().parent / "data" / "egress_review"
CONFIG_NAME = "config.json"
HEAD_NAME = "head.safetensors"
CONTEXTUAL_WEIGHT = "contextual_weight"  # in HEAD_NAME, with the config's "contextual" section
FORMAT = "sovereign-egress-review/2"
CATEGORIES = (
    "covert_source",
    "security_arrangements",
    "protected_person",
    "child",
    "health",
    "operational_plan",
    "private_individual",
)
SIGNAL_PREFIX = "semantic_"
UNAVAILABLE_SIGNAL = "semantic_review_unavailable"
CATEGORY_SHOWN = 0.5  # a flagged text names every category whose own probability reaches this, and at least its top one

# Keys whose string values are protocol, not content (a role, a model name, a content part's type).
_NOT_CONTENT = frozenset(
    {
        "model",
        "role",
        "type",
        "id",
        "tool_call_id",
        "object",
        "encoding_format",
        "response_format",
        "tool_choice",
        "service_tier",
        "reasoning_effort",
        "detail",
    }
)
_MAX_DEPTH = 64
_PIECE_CHARS = 16_384  # long strings are tokenized in pieces of about this size, checking the deadline between them
# What MiniLM's (BERT's) normaliser turns into a space and its pre-tokeniser then splits on: tab, line feed, carriage
# return and Unicode White_Space that is not a control character. A text's tokens are the concatenation of its
# pieces' tokens between these, so each distinct piece ("word") is tokenized once and remembered.
_BERT_SPACE = re.compile("[\t\n\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_WORD_CACHE_MAX = 200_000
# The punctuation of data formats (JSON, CSV, markup, tables, code): read as spaces, so a sentence in a JSON record or a
# CSV row is the same run of word pieces as the sentence in prose (each would otherwise be a word piece of its own
# and dilute the window's mean).
_STRUCTURE = str.maketrans(dict.fromkeys('{}[]<>"|=_*#`\\', " "))

# Specificity: what tells a real case ("the prisoner in cell 14 last night", "Jayden (7)", "our source") from general
# text on the same topic ("explain", "what is", "in general"). MiniLM's vocabulary is uncased and splits numbers and
# times into pieces, so these are read from each word itself: a vector of flags per word, put on the word's first
# word piece, whose mean over a window (like the word-piece weights) feeds the head beside the embedding. Plain
# string operations and re2 (linear time) on words of at most _FEATURE_WORD characters.
FEATURES = (
    "capitalised_mid_sentence",
    "digit",
    "clock_time",
    "day_or_date",
    "relative_time",
    "first_person",
    "third_person",
    "generic_cue",
    "question",
    "age",
)
FEATURE_SCALE = 8.0  # a window's feature input is FEATURE_SCALE * (flags summed) / (tokens + prior weight)
_FEATURE_WORD = 40
_EDGE_PUNCT = ".,;:!?()[]'\"\u2018\u2019\u201c\u201d-"
_SENTENCE_END = (".", "!", "?", ":")


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_CLOCK = re2.compile(r"\d{1,2}([:.]\d{2})?(am|pm|hrs|hours)|\d{1,2}:\d{2}|\d{4}hrs?")
_DATE = re2.compile(r"\d{1,2}(st|nd|rd|th)|\d{1,2}/\d{1,2}(/\d{2,4})?|\d{4}-\d{2}-\d{2}")
_AGE = re2.compile(r"\(\d{1,2}\)|\d{1,2}-?(years?|yrs?)-?old|\d{1,2}yo|\d{1,2}-month-old")
_DAYS = _word_set(
    "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun "
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec weekend"
)
_RELATIVE = _word_set(
    "yesterday today tonight tomorrow overnight currently earlier recently now again still "
    "yesterday's today's tonight's tomorrow's last this next"
)
_FIRST = _word_set("i i'm i've i'll i'd me my mine we we're we've we'll we'd us our ours")
_THIRD = _word_set("he she him her his hers he's she's he'd she'd he'll she'll himself herself")
_GENERIC = _word_set(
    "explain explaining explanation what what's how why general generally typically usually often common "
    "training course module leaflet guidance guide policy policies law laws legal legislation act statutory "
    "statistics national public publicly example examples hypothetical fictional fiction scenario "
    "role-play overview describe define definition history historical difference differences rules "
    "principles process procedure procedures practice research article essay quiz learning students "
    "someone anyone people person's generic template"
)
_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'll", "I'd", "OK", "Ok"})
_NO_FLAGS = (0.0,) * len(FEATURES)


def word_flags(word: str) -> tuple[bool, tuple[float, ...]]:
    """(whether the word is capitalised, its context-free flags: FEATURES with capitalisation left 0)."""
    if len(word) > _FEATURE_WORD:
        return False, _NO_FLAGS
    bare = word.strip(_EDGE_PUNCT)
    low = bare.lower()
    capitalised = bool(bare) and bare[0].isupper() and any(c.islower() for c in bare) and bare not in _NOT_NAMES
    digit = any(c.isdigit() for c in word)
    flags = (
        0.0,
        float(digit),
        float(digit and _CLOCK.fullmatch(low) is not None) or float(low in ("noon", "midnight")),
        float(low in _DAYS or (digit and _DATE.fullmatch(low) is not None)),
        float(low in _RELATIVE),
        float(low in _FIRST),
        float(low in _THIRD),
        float(low in _GENERIC),
        float(word.endswith("?")),
        float(digit and (_AGE.fullmatch(word.strip(".,;:!?'\"")) is not None or _AGE.fullmatch(low) is not None)),
    )
    return capitalised, (flags if any(flags) else _NO_FLAGS)


class ArtefactError(Exception):
    """The artefact or the model folder is missing, unreadable, or does not match its digests."""


class ReviewError(Exception):
    """The review could not be completed (deadline passed, unreadable body, model failure). Callers fail closed."""


@dataclass(frozen=True)
class Review:
    """The verdict on one request. Never any text: signal names and a coarse score only."""

    sensitive: bool
    categories: tuple[str, ...]  # signal names, e.g. ("semantic_child", "semantic_health"); empty when not flagged
    score: float  # the highest window's probability of being sensitive
    bucket: str  # e.g. "semantic_score_0.9": the score floored to a tenth
    second_stage: bool = False  # the transformer read the top window (the head's logit was inside its band)

    @property
    def signals(self) -> tuple[str, ...]:
        """What the audit record gets for a flagged request: the categories and the score bucket."""
        return (*self.categories, self.bucket) if self.sensitive else ()


def default_model_dir() -> Path:
    """The MiniLM folder the offline review uses unless told: ``var/models/minilm`` when it has been prepared
    (`sovereign models prepare minilm`), else the folder its wheel installed (the same files, which the artefact's
    digests check either way)."""
    prepared = Path("var/models/minilm")
    if prepared.is_dir():
        return prepared
    from models.registry import KNOWN_MODELS, package_path

    try:
        return package_path(KNOWN_MODELS["minilm"])
    except FileNotFoundError as exc:
        raise ArtefactError(f"egress review model: {exc}") from None


def score_bucket(score: float) -> str:
    tenth = min(9, max(0, math.floor(score * 10)))
    return f"{SIGNAL_PREFIX}score_0.{tenth}"


def raise_level(classification: Classification, signals: Iterable[str]) -> Classification:
    """The classification after the review kept a request local: at least OFFICIAL-SENSITIVE, its signals added."""
    floor = Level.OFFICIAL_SENSITIVE
    found = {s.type: s for s in classification.signals}
    for name in signals:
        found.setdefault(name, Signal(name, 1))
    readable = classification.readable_level
    return replace(
        classification,
        level=max(classification.level, floor),
        detected_level=max(classification.detected_level, floor),
        readable_level=None if readable is None else max(readable, floor),
        signals=tuple(found[k] for k in sorted(found)),
    )


# -- text out of a request body -----------------------------------------------------------------------------------


def request_texts(body: Mapping[str, Any]) -> list[str]:
    """Every string an OpenAI request body carries as content, in document order.

    Messages of every role, content parts, tool-call arguments (JSON decoded, so their strings are read as text),
    ``name`` fields, ``prompt``, ``input``, ``instructions``, tool schemas, metadata: every string value except the
    few that are protocol (``model``, ``role``, a part's ``type``...). Raises ``ReviewError`` for a body that is
    not JSON-shaped or nests deeper than any real request.
    """
    if not isinstance(body, Mapping):
        raise ReviewError("the request body is not a JSON object")
    return list(_strings(body, None, 0))


def _strings(node: Any, key: str | None, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise ReviewError("the request body nests too deeply")
    if isinstance(node, str):
        if key in _NOT_CONTENT or not node.strip():
            return
        stripped = node.lstrip()
        if stripped[:1] in ("{", "["):  # tool arguments and other embedded JSON: read the strings inside
            try:
                decoded = json.loads(node)
            except (ValueError, RecursionError):
                decoded = None
            if isinstance(decoded, dict | list):
                yield from _strings(decoded, key, depth + 1)
                return
        yield node
    elif isinstance(node, Mapping):
        for k, value in node.items():
            yield from _strings(value, k if isinstance(k, str) else None, depth + 1)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value, key, depth + 1)
    elif node is None or isinstance(node, bool | int | float):
        return
    else:
        raise ReviewError("the request body holds a value that is not JSON")


def reading_views(texts: Iterable[str], check: Callable[[], None] = lambda: None) -> list[list[str]]:
    """What the review reads of ``texts``, as segments whose windows never cross into each other.

    The first segment is every text normalised as the rules normalise it (line breaks, invisible and look-alike
    characters, Word's punctuation, full-width forms: ``routing.normalize.normalise``), read together as one request.
    Each text that carries markup, escapes or encodings (HTML, RTF, percent-escapes, base64 MIME parts, JSON in
    prose) adds a segment of its own with its decoded view (``routing.normalize.decode``), so that a web page or an
    e-mail export reads as the prose it holds, without the tags around it in the same window. Training reads the
    same segments."""
    plain_texts: list[str] = []
    decoded_views: list[list[str]] = []
    for text in texts:
        plain = normalize.normalise(text)
        plain_texts.append(plain.translate(_STRUCTURE))
        if normalize.needs_decoding(plain):
            check()
            decoded = normalize.decode(plain.encode("utf-8", "replace"), check)
            if decoded.strip():
                decoded_views.append([decoded.translate(_STRUCTURE)])
    return [plain_texts, *decoded_views]


def segment_windows(lengths: Sequence[int], sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the windows over segments of these token counts laid end to end (``_windows`` within
    each non-empty segment, offset by the segments before it)."""
    starts, ends, offset = [], [], 0
    for n in lengths:
        if n:
            s, e = _windows(n, sizes)
            starts.append(s + offset)
            ends.append(e + offset)
        offset += n
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(starts), np.concatenate(ends)


def previous_tokens(ids: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """Each token's predecessor for the bigram weights; a segment's first token follows [CLS] (101)."""
    prev = np.concatenate([np.asarray([101], dtype=np.int64), ids[:-1]])
    firsts = np.cumsum([0, *lengths[:-1]])
    prev[firsts[firsts < len(ids)]] = 101
    return prev


def _pieces(text: str) -> Iterator[str]:
    """``text`` in pieces of about ``_PIECE_CHARS``, cut at whitespace where there is some."""
    start, n = 0, len(text)
    while n - start > _PIECE_CHARS:
        cut = text.rfind(" ", start + _PIECE_CHARS // 2, start + _PIECE_CHARS)
        cut = cut if cut > start else start + _PIECE_CHARS
        yield text[start:cut]
        start = cut
    yield text[start:]


def tokens_and_flags(
    texts: Sequence[str], tokenizer: Any, cache: dict[str, Any], check: Callable[[], None] = lambda: None
) -> tuple[np.ndarray, np.ndarray]:
    """Word-piece ids of ``texts`` laid end to end (each word, between ``_BERT_SPACE``, tokenized once and
    remembered in ``cache``), and a (tokens x FEATURES) array of each word's flags on its first word piece. A word is
    mid-sentence unless it starts its text or follows a word that ends a sentence. Training and serving both read
    text through this."""
    ids: list[int] = []
    positions: list[int] = []
    rows: list[tuple[float, ...]] = []
    for text in texts:
        after_end = True
        for piece in _pieces(text):
            check()
            words = _BERT_SPACE.split(piece)
            # A snapshot of what the cache knows: the gate's other thread may empty it meanwhile.
            known: dict[str, tuple[list[int], bool, tuple[float, ...]]] = {}
            missing: list[str] = []
            for word in set(words):
                found = cache.get(word)
                if found is None:
                    missing.append(word)
                else:
                    known[word] = found
            if missing:
                encodings = tokenizer.encode_batch(missing, add_special_tokens=False)
                for word, encoding in zip(missing, encodings, strict=True):
                    known[word] = (encoding.ids, *word_flags(word))
                if len(cache) + len(missing) > _WORD_CACHE_MAX:
                    cache.clear()
                cache.update((word, known[word]) for word in missing)
            for word in words:
                pieces, capitalised, flags = known[word]
                if not pieces:
                    continue
                if capitalised and not after_end:
                    flags = (1.0, *flags[1:])
                if flags is not _NO_FLAGS:
                    positions.append(len(ids))
                    rows.append(flags)
                ids.extend(pieces)
                after_end = word.endswith(_SENTENCE_END)
    feats = np.zeros((len(ids), len(FEATURES)), dtype=np.float32)
    if rows:
        feats[np.asarray(positions, dtype=np.int64)] = np.asarray(rows, dtype=np.float32)
    return np.asarray(ids, dtype=np.int64), feats


# -- the reviewer -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Head:
    table: np.ndarray  # (vocab, hidden + categories + 1): per token W e, the category model's C e, and its weight
    prior: np.ndarray  # (hidden,): the first layer applied to the corpus's mean token embedding
    bias: np.ndarray  # (hidden,)
    out: np.ndarray  # (hidden,)
    out_bias: float
    cat_prior: np.ndarray  # (categories,): the category model applied to the mean token embedding
    cat_bias: np.ndarray  # (categories,)
    unigram: np.ndarray  # (vocab,): weight of each word piece, added to the window's logit
    bigram: np.ndarray  # (buckets,): weight of each hashed word-piece bigram, added to the window's logit
    bigram_mult: int
    feature_in: np.ndarray  # (FEATURES, hidden): the specificity flags' weights into the hidden layer
    feature_out: np.ndarray  # (FEATURES,): and straight into the window's logit
    contextual_weight: np.ndarray | None = None  # (hidden of MiniLM,): the second stage's folded regression, if any


class EgressReviewer:
    """Loaded once (verifying every digest), then called for each request that is about to leave."""

    def __init__(
        self,
        *,
        head: _Head,
        tokenizer: Any,
        windows: Sequence[int],
        prior_weight: float,
        threshold: float,
        categories: Sequence[str],
        digest: str,
        meta: Mapping[str, Any],
        contextual: ContextualStage | None = None,
    ) -> None:
        self._head = head
        self._contextual = contextual  # the second stage near the threshold (routing/egress_context.py), if trained
        self._tokenizer = tokenizer
        self.windows = tuple(int(w) for w in windows)
        self.prior_weight = float(prior_weight)
        self.threshold = float(threshold)
        self.categories = tuple(categories)
        self.digest = digest  # SHA-256 of the artefact's manifest: names exactly which head took a decision
        self._words: dict[str, Any] = {}  # word -> its word-piece ids and flags (see tokens_and_flags)
        self.meta = dict(meta)

    # -- loading ----------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, artefact_dir: Path | str, model_dir: Path | str, *, threshold: float | None = None) -> EgressReviewer:
        """Verify the artefact and the model folder, then load them. Raises ``ArtefactError`` naming what is wrong."""
        artefact, model = Path(artefact_dir), Path(model_dir)
        try:
            verify_manifest(artefact)
        except ManifestError as exc:
            raise ArtefactError(f"egress review artefact: {exc}") from None
        try:
            config = json.loads((artefact / CONFIG_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise ArtefactError(f"egress review artefact {artefact}: unreadable {CONFIG_NAME} ({exc})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ArtefactError(f"egress review artefact {artefact}: not a {FORMAT} artefact")
        if config.get("features") != list(FEATURES):
            raise ArtefactError(f"egress review artefact {artefact}: trained on other specificity features")
        _verify_model(model, config.get("model_files"))
        head = _read_head(artefact / HEAD_NAME, int(config.get("bigram_mult", 1)))
        tokenizer = _tokenizer(model / "tokenizer.json")
        if min(head.table.shape[0], len(head.unigram)) < tokenizer.get_vocab_size():
            raise ArtefactError(f"egress review artefact {artefact}: its token table is smaller than the vocabulary")
        contextual = _contextual_stage(head, model, config["contextual"]) if config.get("contextual") else None
        digest = sha256_file(artefact / MANIFEST_NAME)
        return cls(
            head=head,
            tokenizer=tokenizer,
            windows=config["windows"],
            prior_weight=config["prior_weight"],
            threshold=config["threshold"] if threshold is None else threshold,
            categories=config.get("categories", CATEGORIES),
            digest=digest,
            meta=config,
            contextual=contextual,
        )

    # -- reviewing --------------------------------------------------------------------------------------------

    def review_request(self, body: Mapping[str, Any], deadline_s: float) -> Review:
        """Review every string of an OpenAI request body. Raises ``ReviewError`` (callers fail closed)."""
        deadline = time.perf_counter() + deadline_s
        return self._review(request_texts(body), deadline)

    def review_texts(self, texts: Iterable[str], deadline_s: float) -> Review:
        """Review texts read together as one request. Raises ``ReviewError`` (callers fail closed)."""
        deadline = time.perf_counter() + deadline_s
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise ReviewError("texts must be strings")
        return self._review(texts, deadline)

    def _review(self, texts: list[str], deadline: float) -> Review:
        def check() -> None:
            if time.perf_counter() > deadline:
                raise ReviewError("the egress review ran past its deadline")

        try:
            segments = [self._token_ids(segment, deadline) for segment in reading_views(texts, check)]
            lengths = [len(ids) for ids, _ in segments]
            if not any(lengths):
                return Review(False, (), 0.0, score_bucket(0.0))
            ids = np.concatenate([ids for ids, _ in segments])
            starts, ends = segment_windows(lengths, self.windows)
            hidden, cat_logits, lexical = self._windows_of(
                ids, np.concatenate([f for _, f in segments]), lengths, starts, ends
            )
            if time.perf_counter() > deadline:
                raise ReviewError("the egress review ran past its deadline")
            h = self._head
            logits = hidden @ h.out + h.out_bias + lexical
            best = int(np.argmax(logits))
            logit = float(logits[best])
            stage, second_stage = self._contextual, False
            if stage is not None and stage.applies(logit):
                second_stage = True
                logit = stage.logit(logit, ids[starts[best] : ends[best]])
                if time.perf_counter() > deadline:
                    raise ReviewError("the egress review ran past its deadline")
            score = float(_sigmoid(logit))
        except ReviewError:
            raise
        except Exception as exc:  # the message may quote the text: keep only the kind of failure
            raise ReviewError(f"the egress review failed ({exc.__class__.__name__})") from None
        if not math.isfinite(score):
            raise ReviewError("the egress review produced no score")
        if score < self.threshold:
            return Review(False, (), score, score_bucket(score), second_stage)
        cat_p = _sigmoid(cat_logits[best])
        shown = [i for i in np.argsort(-cat_p) if cat_p[i] >= CATEGORY_SHOWN] or [int(np.argmax(cat_p))]
        categories = tuple(SIGNAL_PREFIX + self.categories[i] for i in sorted(shown))
        return Review(True, categories, score, score_bucket(score), second_stage)

    def _token_ids(self, texts: list[str], deadline: float) -> tuple[np.ndarray, np.ndarray]:
        """The texts' word-piece ids, concatenated, exactly as the tokenizer gives them text by text, and each
        token's specificity flags (``FEATURES``; a word's flags on its first word piece)."""

        def check() -> None:
            if time.perf_counter() > deadline:
                raise ReviewError("the egress review ran past its deadline")

        return tokens_and_flags(texts, self._tokenizer, self._words, check)

    def _windows_of(
        self, ids: np.ndarray, flags: np.ndarray, lengths: Sequence[int], starts: np.ndarray, ends: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per window (each configured size at half-size strides, within each segment of ``lengths`` tokens): the
        hidden layer, the category logits and the word-piece and specificity terms."""
        h = self._head
        rows = h.table[ids]
        prefix = np.zeros((len(ids) + 1, rows.shape[1]), dtype=np.float32)
        np.cumsum(rows, axis=0, out=prefix[1:])
        c = np.float32(self.prior_weight)
        sums = prefix[ends] - prefix[starts]
        k, weight = len(h.bias), sums[:, -1:] + c
        fsum = np.zeros((len(ids) + 1, flags.shape[1]), dtype=np.float32)
        np.cumsum(flags, axis=0, out=fsum[1:])
        specific = (fsum[ends] - fsum[starts]) * np.float32(FEATURE_SCALE) / weight
        hidden = np.maximum((sums[:, :k] + c * h.prior) / weight + specific @ h.feature_in + h.bias, 0.0)
        cat_logits = (sums[:, k:-1] + c * h.cat_prior) / weight + h.cat_bias
        prev = previous_tokens(ids, lengths)
        weights = h.unigram[ids] + h.bigram[(prev * h.bigram_mult + ids) % len(h.bigram)]
        gsum = np.zeros(len(ids) + 1, dtype=np.float32)
        np.cumsum(weights, out=gsum[1:])
        lexical = (gsum[ends] - gsum[starts]) / ((ends - starts).astype(np.float32) + c) + specific @ h.feature_out
        return hidden, cat_logits, lexical


def _windows(n: int, sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the windows over ``n`` tokens: each size at stride size/2, the last one flush with the end;
    a text shorter than a size is one window of its own length."""
    spans: set[tuple[int, int]] = set()
    for w in sizes:
        if n <= w:
            spans.add((0, n))
            continue
        step = max(1, w // 2)
        spans.update((s, s + w) for s in range(0, n - w + 1, step))
        spans.add((n - w, n))
    ordered = sorted(spans)
    return (
        np.fromiter((s for s, _ in ordered), dtype=np.int64, count=len(ordered)),
        np.fromiter((e for _, e in ordered), dtype=np.int64, count=len(ordered)),
    )


def _sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _verify_model(model: Path, expected: Any) -> None:
    if not isinstance(expected, dict) or "tokenizer.json" not in expected:
        raise ArtefactError("egress review artefact: it does not record the model files it was distilled from")
    if not model.is_dir():
        raise ArtefactError(f"egress review model {model}: not a folder (run `sovereign models prepare minilm`)")
    manifest_files: dict[str, str] = {}
    if (model / MANIFEST_NAME).is_file():
        try:
            verify_manifest(model)
            manifest_files = json.loads((model / MANIFEST_NAME).read_text())["files"]
        except (ManifestError, ValueError, KeyError, TypeError) as exc:
            raise ArtefactError(f"egress review model: {exc}") from None
    for name, digest in sorted(expected.items()):
        path = model / name
        actual = manifest_files.get(name)
        if actual is None:
            if not path.is_file():
                raise ArtefactError(f"egress review model {model}: {name} is missing")
            actual = sha256_file(path)
        if actual != digest:
            raise ArtefactError(
                f"egress review model {model}: {name} is not the file the artefact was distilled from (SHA-256 differs)"
            )


def _read_head(path: Path, bigram_mult: int) -> _Head:
    from safetensors.numpy import load_file

    try:
        t = load_file(str(path))
        head = _Head(
            table=t["table"].astype(np.float32),
            prior=t["prior"].astype(np.float32),
            bias=t["bias"].astype(np.float32),
            out=t["out"].astype(np.float32),
            out_bias=float(t["out_bias"].reshape(-1)[0]),
            cat_prior=t["cat_prior"].astype(np.float32),
            cat_bias=t["cat_bias"].astype(np.float32),
            unigram=t["unigram"].astype(np.float32),
            bigram=t["bigram"].astype(np.float32),
            bigram_mult=bigram_mult,
            feature_in=t["feature_in"].astype(np.float32),
            feature_out=t["feature_out"].astype(np.float32),
            contextual_weight=t[CONTEXTUAL_WEIGHT].astype(np.float32) if CONTEXTUAL_WEIGHT in t else None,
        )
    except Exception as exc:
        raise ArtefactError(f"egress review artefact: unreadable {path.name} ({exc.__class__.__name__})") from None
    hidden = len(head.bias)
    if not (
        len(head.bigram) > 0
        and head.prior.shape == head.out.shape == (hidden,)
        and head.cat_prior.shape == head.cat_bias.shape
        and head.table.shape[1] == hidden + len(head.cat_bias) + 1
        and head.feature_in.shape == (len(FEATURES), hidden)
        and head.feature_out.shape == (len(FEATURES),)
    ):
        raise ArtefactError(f"egress review artefact: {path.name} has inconsistent shapes")
    return head


def _contextual_stage(head: _Head, model: Path, config: Mapping[str, Any]) -> ContextualStage:
    """The second stage: its regression from the head's file, the transformer from the (verified) model folder."""
    try:
        low, high = (float(x) for x in config["band"])
        bias = float(config["bias"])
    except Exception as exc:
        raise ArtefactError(f"egress review artefact: unreadable contextual stage ({exc.__class__.__name__})") from None
    if head.contextual_weight is None:
        raise ArtefactError(f"egress review artefact: {HEAD_NAME} lacks the contextual stage's weights")
    try:
        transformer = load_transformer(model)
    except Exception as exc:
        kind = exc.__class__.__name__
        raise ArtefactError(f"egress review model {model}: cannot load the transformer ({kind})") from None
    if head.contextual_weight.shape != (transformer.config.hidden_size,) or not low < high:
        raise ArtefactError("egress review artefact: its contextual stage does not fit the model")
    return ContextualStage(transformer, head.contextual_weight, bias, (low, high))


def _tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ArtefactError(f"egress review model: cannot load {path} ({exc.__class__.__name__})") from None
    tokenizer.no_truncation()  # long inputs are windowed here, never cut
    tokenizer.no_padding()
    return tokenizer
