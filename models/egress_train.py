"""Train, evaluate and write the egress review's artefact: ``sovereign models train-egress-review``.

One command, reproducible from the repository:

1. distil MiniLM into static token embeddings: every vocabulary token through the transformer once (``[CLS] t
   [SEP]``, mean of the three outputs), 30,522 x 384 (cached under ``var/`` by the model's digest);
2. read the labelled data (``models/egress_data``) and its fixed split: the held-out groups are never trained on and
   never used to choose anything;
3. 5-fold cross-validation over the training groups (out-of-fold scores): each fold trains the head and, on its
   training items' top windows, the second stage (below), and reads its held-back items. From those scores: how
   the second stage's logit joins the head's (``Stacking``), and the threshold, the highest that keeps recall on
   the handwritten sensitive items at ``--target-recall``;
4. train the head and the second stage on every training item, fold the head's first layer into the token table
   and write the artefact with its SHA-256 manifest (``routing/data/egress_review``);
5. load that artefact through ``routing.egress_review.EgressReviewer`` (the code the server runs) and evaluate it on
   the held-out split: recall on sensitive items, false-positive rate on benign same-topic items and on general
   ones, per category; write ``report.json`` and the precision/recall plot.

The head, per window of tokens (64 at a stride of 32): each token t has a projection ``W e_t`` of its static
embedding ``e_t`` (so a token never seen in training still gets a sensible value); the window's hidden layer is
``relu((sum W e_t + c W mu) / (n + c) + V f + b)``, smoothed towards the corpus's mean token ``mu``, where ``f`` is
the window's density of specificity flags (``routing.egress_review.FEATURES``, ``FEATURE_SCALE * sum / (n + c)``);
a linear output reads it, plus ``v f`` and the window's mean learned weight of its word pieces and of their hashed
bigrams. Two such heads from different seeds are averaged (``Hyper.members``). A text's score is its
highest window's (training uses the same maximum, so a long benign document is trained as benign everywhere, and one
with a sensitive paragraph inside as sensitive somewhere). Categories come from a second linear output on the same
hidden layer.

The second stage (``routing/egress_context.py``; ``Hyper.contextual``): MiniLM itself reads the top window (int8),
and a logistic regression on that embedding moves the window's logit, only where the head's logit lies within
``contextual_band`` standard deviations of the head's own threshold. Its logit joins the head's with weight
``contextual_weight``, both standardised over the out-of-fold logits; the weight and the band were chosen in
cross-validation (``benchmarks/RESULTS.md``, "A contextual second stage").

(``Hyper`` also holds the options that were tried and are off: a learned per-token importance in the mean.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.egress_data import CATEGORIES, Item, fresh_sets, splits
from models.manifest import sha256_file, write_manifest
from routing.egress_context import embed_windows, load_transformer
from routing.egress_review import (
    CONFIG_NAME,
    CONTEXTUAL_WEIGHT,
    DEFAULT_ARTEFACT,
    FEATURE_SCALE,
    FEATURES,
    FORMAT,
    HEAD_NAME,
    previous_tokens,
    reading_views,
    request_texts,
    segment_windows,
    tokens_and_flags,
)
from routing.egress_review import _sigmoid as sigmoid  # the reviewer's own, so training reads scores as it does

DEFAULT_MODEL = Path("var/models/minilm")
DEFAULT_REPORT = Path("benchmarks/results/egress-review")
CACHE = Path("var/cache/egress-review")
MODEL_FILES = ("tokenizer.json", "vocab.txt", "config.json", "model.safetensors")
BIGRAM_BUCKETS = 1 << 18
BIGRAM_MULT = 1_000_003


@dataclass(frozen=True)
class Hyper:
    hidden: int = 64
    windows: tuple[int, ...] = (64,)
    prior_weight: float = 8.0
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-2
    dropout: float = 0.3
    bigrams: bool = True
    unigrams: bool = True
    attention: bool = False
    features: bool = True  # the specificity flags (routing.egress_review.FEATURES) feed the head
    category_loss: float = 0.5
    reference_weight: float = 0.3  # reference.txt's items (and documents built from them) count this much each
    balance: bool = True  # sensitive and benign items weigh the same in total
    members: int = 2  # heads trained from different seeds, their logits averaged (folds into one wider head)
    seed: int = 19
    # The second stage (routing/egress_context.py): MiniLM itself on the top window, where the head is least sure.
    # Off by default: it cuts false positives but costs ~10 ms on most long requests (benchmarks/RESULTS.md, "A
    # contextual second stage"); `--hyper '{"contextual": true}'` trains it into the artefact.
    contextual: bool = False
    contextual_weight: float = 0.5  # its share of the stacked logit, in standard deviations of each stage's logits
    contextual_band: float = 0.5  # it runs within this many standard deviations of the head's own threshold
    contextual_decay: float = 1e-4  # L2 weight of its logistic regression


# -- distillation -------------------------------------------------------------------------------------------------


def model_digests(model_dir: Path) -> dict[str, str]:
    return {name: sha256_file(model_dir / name) for name in MODEL_FILES}


def distil(model_dir: Path, cache: Path = CACHE) -> np.ndarray:
    """Static embeddings of every vocabulary token, computed by MiniLM itself (cached by the weights' digest)."""
    key = hashlib.sha256(json.dumps(model_digests(model_dir), sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"static-{key}.npy"
    if path.is_file():
        return np.load(path)
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    vocab = model.config.vocab_size
    cls_id, sep_id = 101, 102
    table = np.zeros((vocab, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, vocab, 1024):
            ids = torch.arange(start, min(vocab, start + 1024))
            batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            out = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            table[start : start + len(ids)] = out.mean(dim=1).numpy()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, table)
    return table


# -- data into tensors --------------------------------------------------------------------------------------------


def raw_texts(item: Item) -> list[str]:
    return request_texts(item.request) if item.request is not None else [item.text or ""]


def item_segments(item: Item) -> list[list[str]]:
    """What the reviewer reads of an item (``reading_views``), so training and serving read the same text."""
    return reading_views(raw_texts(item))


@dataclass
class Encoded:
    ids: np.ndarray  # all items' tokens, one flat array
    flags: np.ndarray  # (tokens x FEATURES): each token's specificity flags (routing.egress_review.tokens_and_flags)
    prev: np.ndarray  # each token's predecessor for its bigram (routing.egress_review.previous_tokens)
    starts: np.ndarray  # window starts (into ids)
    ends: np.ndarray
    doc: np.ndarray  # the item of each window
    y: np.ndarray  # per item: 1 sensitive
    cats: np.ndarray  # per item x category
    reference: np.ndarray  # per item: built from reference text only (documentation, code, word salad)
    n: int


def encode(items: Sequence[Item], tokenizer: Any, windows: Sequence[int]) -> Encoded:
    flat: list[np.ndarray] = []
    flat_flags: list[np.ndarray] = []
    starts, ends, doc, prev = [], [], [], []
    offset = 0
    cache: dict[str, Any] = {}
    for d, item in enumerate(items):
        segments, seg_flags = [], []
        for texts in item_segments(item):
            ids, flags = tokens_and_flags(texts, tokenizer, cache)
            segments.append(ids)
            seg_flags.append(flags)
        if not any(len(seg) for seg in segments):
            segments = [np.asarray([100], dtype=np.int64)]  # [UNK]: an empty text still gets a (neutral) window
            seg_flags = [np.zeros((1, len(FEATURES)), dtype=np.float32)]
        lengths = [len(seg) for seg in segments]
        flat_flags.append(np.concatenate(seg_flags))
        s, e = segment_windows(lengths, windows)
        starts.append(s + offset)
        ends.append(e + offset)
        doc.append(np.full(len(s), d))
        flat.append(np.concatenate(segments))
        prev.append(previous_tokens(flat[-1], lengths))
        offset += sum(lengths)
    y = np.array([i.sensitive for i in items], dtype=np.float32)
    cats = np.array([[c in i.categories for c in CATEGORIES] for i in items], dtype=np.float32) * y[:, None]
    reference = np.array([i.categories == ("reference",) for i in items])
    return Encoded(
        np.concatenate(flat),
        np.concatenate(flat_flags),
        np.concatenate(prev),
        np.concatenate(starts),
        np.concatenate(ends),
        np.concatenate(doc),
        y,
        cats,
        reference,
        len(items),
    )


def bigram_hashes(ids: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Bucket of each token's (previous token, token) pair (``previous_tokens``: a segment starts after [CLS])."""
    return (prev * BIGRAM_MULT + ids) % BIGRAM_BUCKETS


# -- the head -----------------------------------------------------------------------------------------------------


def _torch_head(static: np.ndarray, hyper: Hyper, mu: np.ndarray) -> Any:
    import torch

    class Head(torch.nn.Module):
        mu: torch.Tensor  # a registered buffer

        def __init__(self) -> None:
            super().__init__()
            dim = static.shape[1]
            self.proj = torch.nn.Linear(dim, hyper.hidden, bias=False)
            self.attn = torch.nn.Linear(dim, 1)
            self.bias = torch.nn.Parameter(torch.zeros(hyper.hidden))
            self.out = torch.nn.Linear(hyper.hidden, 1)
            self.cat = torch.nn.Linear(hyper.hidden, len(CATEGORIES))
            self.feature_in = torch.nn.Linear(len(FEATURES), hyper.hidden, bias=False)
            self.feature_out = torch.nn.Linear(len(FEATURES), 1, bias=False)
            if not hyper.features:
                torch.nn.init.zeros_(self.feature_in.weight)
                torch.nn.init.zeros_(self.feature_out.weight)
                self.feature_in.weight.requires_grad_(False)
                self.feature_out.weight.requires_grad_(False)
            self.bigram = torch.nn.Parameter(torch.zeros(BIGRAM_BUCKETS))
            self.unigram = torch.nn.Parameter(torch.zeros(len(static)))
            torch.nn.init.zeros_(self.attn.weight)
            torch.nn.init.zeros_(self.attn.bias)
            self.drop = torch.nn.Dropout(hyper.dropout)
            self.register_buffer("mu", torch.tensor(mu, dtype=torch.float32))

        def token_values(self, emb: Any) -> tuple[Any, Any]:
            """(a, a * W e) for the given embeddings: what the artefact's table holds per token."""
            # Bounded (e^-2 .. e^2): a token may count for more than another, never drown a window on its own.
            a = torch.exp(2 * torch.tanh(self.attn(emb)[:, 0])) if hyper.attention else torch.ones(len(emb))
            return a, a[:, None] * self.proj(emb)

        def forward(self, enc: dict[str, Any]) -> tuple[Any, Any]:
            a_u, h_u = self.token_values(enc["emb"])  # per distinct token
            u = self.unigram[enc["unique"]] if hyper.unigrams else torch.zeros(len(a_u))
            sums = enc["tokens"] @ torch.cat([h_u, a_u[:, None], u[:, None]], dim=1)  # per window
            c = hyper.prior_weight
            prior = self.proj(self.mu[None])[0]
            mean = (sums[:, :-2] + c * prior) / (sums[:, -2:-1] + c)
            specific = enc["flags"] * FEATURE_SCALE / (enc["lengths"][:, None] + c)
            hidden = torch.relu(mean + self.feature_in(specific) + self.bias)
            logit = self.out(self.drop(hidden))[:, 0]
            lexical = sums[:, -1]
            if hyper.bigrams:
                lexical = lexical + (enc["bigrams"] @ self.bigram[enc["buckets"]][:, None])[:, 0]
            logit = logit + lexical / (enc["lengths"] + c) + self.feature_out(specific)[:, 0]
            return logit, self.cat(self.drop(hidden))

    return Head()


def _counts(rows: np.ndarray, enc: Encoded) -> tuple[Any, np.ndarray]:
    """Sparse (windows x distinct values) counts of ``rows`` (one value per token position), and the distinct values.

    Window sums then become one sparse product per step instead of per-token gathers and prefix sums."""
    import torch

    unique, inv = np.unique(rows, return_inverse=True)
    lengths = enc.ends - enc.starts
    window = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.repeat(enc.starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    position = np.arange(lengths.sum()) + offsets
    index = torch.tensor(np.stack([window, inv[position]]))
    with torch.sparse.check_sparse_tensor_invariants(False):
        counts = torch.sparse_coo_tensor(index, torch.ones(index.shape[1]), (len(lengths), len(unique))).coalesce()
    return _SparseProduct(counts), unique


class _SparseProduct:
    """A constant sparse matrix C with ``C @ x`` differentiable in x, both ways in CSR (autograd's own backward
    through a sparse product transposes C at every step, which dominated training time)."""

    def __init__(self, coo: Any) -> None:
        import torch

        self.forward_csr = coo.to_sparse_csr()
        self.backward_csr = coo.t().coalesce().to_sparse_csr()

        class Product(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any) -> Any:
                return self.forward_csr @ x

            @staticmethod
            def backward(ctx: Any, grad: Any) -> Any:
                return self.backward_csr @ grad

        self._product = Product

    def __matmul__(self, x: Any) -> Any:
        return self._product.apply(x)


def _tensors(enc: Encoded, static: np.ndarray) -> dict[str, Any]:
    import torch

    tokens, unique = _counts(enc.ids, enc)
    bigrams, buckets = _counts(bigram_hashes(enc.ids, enc.prev), enc)
    prefix = np.zeros((len(enc.ids) + 1, enc.flags.shape[1]), dtype=np.float32)
    np.cumsum(enc.flags, axis=0, out=prefix[1:])
    return {
        "flags": torch.tensor(prefix[enc.ends] - prefix[enc.starts]),
        "emb": torch.tensor(static[unique]),
        "unique": torch.tensor(unique),
        "tokens": tokens,
        "bigrams": bigrams,
        "buckets": torch.tensor(buckets),
        "lengths": torch.tensor(enc.ends - enc.starts, dtype=torch.float32),
        "doc": torch.tensor(enc.doc),
    }


def _doc_max(values: Any, doc: Any, n: int) -> Any:
    import torch

    return torch.full((n,), -1e9).scatter_reduce(0, doc, values, reduce="amax")


def fit(enc: Encoded, static: np.ndarray, hyper: Hyper, mu: np.ndarray) -> list[Any]:
    """``hyper.members`` heads, one per seed."""
    return [_fit_one(enc, static, hyper, mu, hyper.seed + k) for k in range(hyper.members)]


def _fit_one(enc: Encoded, static: np.ndarray, hyper: Hyper, mu: np.ndarray, seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    model = _torch_head(static, hyper, mu)
    t = _tensors(enc, static)
    y = torch.tensor(enc.y)
    cats = torch.tensor(enc.cats)
    sensitive = y > 0
    opt = torch.optim.AdamW(model.parameters(), lr=hyper.lr, weight_decay=hyper.weight_decay)
    weight = np.where(enc.reference, hyper.reference_weight, 1.0)
    if hyper.balance and enc.y.any() and not enc.y.all():
        weight = np.where(enc.y > 0, weight * weight[enc.y == 0].sum() / weight[enc.y > 0].sum(), weight)
    weight_t = torch.tensor(weight / weight.mean(), dtype=torch.float32)
    model.train()
    for _ in range(hyper.epochs):
        logit, cat = model(t)
        best = _doc_max(logit, t["doc"], enc.n)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(best, y, weight=weight_t)
        # Categories of a sensitive item: read at its windows, weighted by how sensitive each window scored.
        w = torch.exp(logit - best[t["doc"]]).detach()
        norm = torch.zeros(enc.n).index_add(0, t["doc"], w)
        doc_cat = torch.zeros(enc.n, len(CATEGORIES)).index_add(0, t["doc"], cat * w[:, None]) / norm[:, None]
        loss = loss + hyper.category_loss * torch.nn.functional.binary_cross_entropy_with_logits(
            doc_cat[sensitive], cats[sensitive]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def fit_categories(enc: Encoded, static: np.ndarray, hyper: Hyper, mu: np.ndarray) -> Any:
    """Which categories a sensitive window is about: a linear model on the window's mean embedding (smoothed like the
    head's), trained on every window of every sensitive item. Categories are topics, which the embeddings carry well;
    kept apart from the head so that they do not compete for its hidden units."""
    import torch

    torch.manual_seed(hyper.seed)
    t = _tensors(enc, static)
    c = hyper.prior_weight
    with torch.no_grad():
        sums = t["tokens"] @ torch.cat([t["emb"], torch.ones(len(t["emb"]), 1)], dim=1)
        x = (sums[:, :-1] + c * torch.tensor(mu, dtype=torch.float32)) / (sums[:, -1:] + c)
    keep = torch.tensor(enc.y[enc.doc] > 0)
    x, labels = x[keep], torch.tensor(enc.cats[enc.doc])[keep]
    model = torch.nn.Linear(x.shape[1], len(CATEGORIES))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(hyper.epochs):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def fold_head(models: list[Any], categories: Any, static: np.ndarray) -> dict[str, np.ndarray]:
    """The head as the artefact stores it. The table's columns, per token: each member's first layer applied to the
    token's embedding (side by side; their logits are averaged, so the output weights are divided by the number of
    members), the category model applied to it, and the token's weight in the mean (1 unless importance is on)."""
    import torch

    n = len(models)
    with torch.no_grad():
        emb = torch.tensor(static)
        parts = [m.token_values(emb) for m in models]
        if any(not torch.equal(parts[0][0], a) for a, _ in parts):
            raise ValueError("members must share the token importance to be folded together")
        a = parts[0][0][:, None]
        table = torch.cat([ah for _, ah in parts] + [a * (emb @ categories.weight.T), a], dim=1).numpy()
        mu = models[0].mu
        return {
            "table": table.astype(np.float32),
            "prior": torch.cat([m.proj(m.mu[None])[0] for m in models]).numpy().astype(np.float32),
            "bias": torch.cat([m.bias for m in models]).numpy().astype(np.float32),
            "out": (torch.cat([m.out.weight[0] for m in models]) / n).numpy().astype(np.float32),
            "out_bias": (sum(m.out.bias for m in models) / n).numpy().astype(np.float32),
            "cat_prior": (mu @ categories.weight.T).numpy().astype(np.float32),
            "cat_bias": categories.bias.numpy().astype(np.float32),
            "bigram": (sum(m.bigram for m in models) / n).numpy().astype(np.float32),
            "unigram": (sum(m.unigram for m in models) / n).numpy().astype(np.float32),
            "feature_in": torch.cat([m.feature_in.weight.T for m in models], dim=1).numpy().astype(np.float32),
            "feature_out": (sum(m.feature_out.weight[0] for m in models) / n).numpy().astype(np.float32),
        }


# -- choosing the threshold ---------------------------------------------------------------------------------------


def window_logits(models: list[Any], enc: Encoded, static: np.ndarray) -> np.ndarray:
    """Every window's logit (the members' logits averaged, as the folded artefact computes them)."""
    import torch

    with torch.no_grad():
        t = _tensors(enc, static)
        return torch.stack([m(t)[0] for m in models]).mean(dim=0).numpy()


def top_windows(enc: Encoded, logits: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per item: its highest window's logit and that window's word-piece ids (what the second stage reads)."""
    best = np.full(enc.n, -np.inf)
    where = np.zeros(enc.n, dtype=np.int64)
    for w, (d, value) in enumerate(zip(enc.doc, logits, strict=True)):
        if value > best[d]:
            best[d], where[d] = value, w
    return best, [enc.ids[enc.starts[w] : enc.ends[w]] for w in where]


def fit_logistic(x: np.ndarray, y: np.ndarray, weight_decay: float) -> tuple[np.ndarray, float]:
    """A logistic regression (L-BFGS, L2 on the weights): the second stage's reading of a window's embedding."""
    import torch

    xt, yt = torch.tensor(x), torch.tensor(y)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300)

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + weight_decay * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


@dataclass(frozen=True)
class Folds:
    """Out-of-fold logits of the training items: the head's top window, and the second stage's on that window."""

    fast: np.ndarray
    contextual: np.ndarray | None


def cross_validate(
    items: list[Item], tokenizer: Any, static: np.ndarray, hyper: Hyper, transformer: Any = None, folds: int = 5
) -> Folds:
    """Out-of-fold logits for ``items`` (folds by group, so twins stay together). With ``transformer``, each fold
    also fits the second stage on its training items' top windows and reads its held-back items' top windows."""
    groups = sorted({i.group for i in items})
    random.Random(hyper.seed).shuffle(groups)
    fold_of = {g: n % folds for n, g in enumerate(groups)}
    fast = np.zeros(len(items))
    contextual = np.zeros(len(items)) if transformer is not None else None
    for f in range(folds):
        train = [i for i in items if fold_of[i.group] != f]
        test_idx = [n for n, i in enumerate(items) if fold_of[i.group] == f]
        enc = encode(train, tokenizer, hyper.windows)
        model = fit(enc, static, hyper, corpus_mean(enc, static))
        test_enc = encode([items[n] for n in test_idx], tokenizer, hyper.windows)
        fast[test_idx], test_windows = top_windows(test_enc, window_logits(model, test_enc, static))
        if contextual is not None:
            w, b = fit_contextual(model, enc, static, transformer, hyper)
            contextual[test_idx] = embed_windows(transformer, test_windows) @ w + b
    return Folds(fast, contextual)


def fit_contextual(
    models: list[Any], enc: Encoded, static: np.ndarray, transformer: Any, hyper: Hyper
) -> tuple[np.ndarray, float]:
    """The second stage's regression, on each training item's top window under ``models``."""
    _, windows = top_windows(enc, window_logits(models, enc, static))
    return fit_logistic(embed_windows(transformer, windows), enc.y, hyper.contextual_decay)


@dataclass(frozen=True)
class Stacking:
    """How the second stage's logit joins the head's, fixed from the out-of-fold logits: inside ``band`` (head
    logits), ``logit = fast + scale * (contextual - offset)``."""

    band: tuple[float, float]
    scale: float
    offset: float

    def apply(self, fast: np.ndarray, contextual: np.ndarray) -> np.ndarray:
        inside = (fast > self.band[0]) & (fast < self.band[1])
        return np.where(inside, fast + self.scale * (contextual - self.offset), fast)


def stacking(folds: Folds, items: list[Item], hyper: Hyper, target_recall: float) -> Stacking:
    """Both stages' logits standardised over the folds; the band centred on the head's own threshold."""
    assert folds.contextual is not None
    centre = _logit(choose_threshold(sigmoid(folds.fast), items, target_recall))
    half = hyper.contextual_band * float(folds.fast.std())
    scale = hyper.contextual_weight * float(folds.fast.std()) / float(folds.contextual.std())
    return Stacking((centre - half, centre + half), scale, float(folds.contextual.mean()))


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def corpus_mean(enc: Encoded, static: np.ndarray) -> np.ndarray:
    return static[enc.ids].mean(axis=0)


def choose_threshold(scores: np.ndarray, items: list[Item], target_recall: float) -> float:
    """The highest threshold that keeps recall on the handwritten sensitive items at ``target_recall``."""
    pos = np.sort(
        np.array([s for s, i in zip(scores, items, strict=True) if i.sensitive and i.source == "handwritten"])
    )
    k = int(np.floor(len(pos) * (1 - target_recall)))  # this many may fall below the threshold
    return float(pos[k]) if len(pos) else 0.5


# -- evaluation ---------------------------------------------------------------------------------------------------


def rates(scores: np.ndarray, items: list[Item], threshold: float) -> dict[str, Any]:
    def share(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        k = int((scores[mask] >= threshold).sum())
        return {"n": n, "flagged": k, "rate": round(k / n, 4) if n else None}

    hand = np.array([i.source == "handwritten" for i in items])
    sens = np.array([i.sensitive for i in items])
    topical = np.array([i.categories[0] not in ("general", "reference") for i in items])
    reference = np.array([i.categories[0] == "reference" for i in items])
    long_doc = np.array([i.id.startswith("gen:doc:long") for i in items])
    out = {
        "recall_sensitive": share(hand & sens),
        "fpr_benign_same_topic": share(hand & ~sens & topical),
        "fpr_benign_general": share(hand & ~sens & ~topical),
        "fpr_reference_text": share(reference),
        "generated_recall_sensitive": share(~hand & sens),
        "generated_fpr_benign": share(~hand & ~sens & ~reference),
        "long_document_recall": share(long_doc & sens),
        "long_document_fpr": share(long_doc & ~sens),
        "per_category": {},
    }
    for cat in CATEGORIES:
        in_cat = np.array([cat in i.categories for i in items])
        out["per_category"][cat] = {"recall": share(hand & sens & in_cat), "fpr": share(hand & ~sens & in_cat)}
    return out


def pr_curve(scores: np.ndarray, items: list[Item]) -> dict[str, list[float]]:
    """Precision and recall on handwritten sensitive vs handwritten benign same-topic items, by threshold."""
    keep = [
        (s, i.sensitive)
        for s, i in zip(scores, items, strict=True)
        if i.source == "handwritten" and (i.sensitive or i.categories[0] not in ("general", "reference"))
    ]
    thresholds = np.linspace(0.0, 1.0, 201)
    precision, recall, fpr = [], [], []
    pos = sum(1 for _, y in keep if y)
    neg = len(keep) - pos
    for t in thresholds:
        tp = sum(1 for s, y in keep if y and s >= t)
        fp = sum(1 for s, y in keep if not y and s >= t)
        precision.append(tp / (tp + fp) if tp + fp else 1.0)
        recall.append(tp / pos if pos else 0.0)
        fpr.append(fp / neg if neg else 0.0)
    return {"threshold": thresholds.round(3).tolist(), "precision": precision, "recall": recall, "fpr": fpr}


def plot(curves: dict[str, dict[str, list[float]]], threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, c in curves.items():
        ax1.plot(c["recall"], c["precision"], label=name)
        ax2.plot(c["threshold"], c["recall"], label=f"recall ({name})")
        ax2.plot(c["threshold"], c["fpr"], linestyle="--", label=f"false-positive rate ({name})")
    for c in curves.values():
        i = int(np.argmin(np.abs(np.array(c["threshold"]) - threshold)))
        ax1.plot([c["recall"][i]], [c["precision"][i]], "o", color="black")
    ax1.set(
        xlabel="recall (sensitive)",
        ylabel="precision",
        title="Precision / recall, sensitive vs benign same-topic",
        xlim=(0, 1.01),
        ylim=(0, 1.01),
    )
    ax1.legend(loc="lower left")
    ax2.axvline(threshold, color="black", linewidth=0.8)
    ax2.set(xlabel="threshold", ylabel="rate", title=f"By threshold (chosen {threshold:.3f})", ylim=(0, 1.01))
    ax2.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command --------------------------------------------------------------------------------------------------


def write_artefact(out: Path, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> str:
    from safetensors.numpy import save_file

    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        for f in tmp.iterdir():
            f.unlink()
    tmp.mkdir(parents=True, exist_ok=True)
    # float16 keeps the table small in the repository (about 4 MB); the reviewer computes in float32.
    save_file(
        {k: (v.astype(np.float16) if k in ("table", "bigram", "unigram") else v) for k, v in arrays.items()},
        str(tmp / HEAD_NAME),
    )
    (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_manifest(tmp, "models/egress_train.py")
    if out.exists():
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    tmp.rename(out)
    return sha256_file(out / "manifest.sha256.json")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign models train-egress-review", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="prepared MiniLM folder (default %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_ARTEFACT, help="artefact folder (default: the packaged one)"
    )
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="report.json and the plot go here")
    parser.add_argument(
        "--target-recall",
        type=float,
        default=0.96,
        help="cross-validated recall the threshold must keep (default %(default)s)",
    )
    parser.add_argument("--cv-only", action="store_true", help="cross-validate and print; write nothing")
    parser.add_argument("--show-errors", action="store_true", help="with --cv-only: list the misread items")
    parser.add_argument("--hyper", type=json.loads, default={}, help="JSON overrides of the head's settings (Hyper)")
    parser.add_argument(
        "--held-out",
        choices=("split", *fresh_sets()),
        default="split",
        help="split: 30%% of the groups of models/egress_data are held out (default); a fresh set's name: that set "
        "is held out and everything else trains, the other fresh sets included",
    )
    args = parser.parse_args(argv)

    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    started = time.perf_counter()
    overrides: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in args.hyper.items()}
    hyper = Hyper(**overrides)
    tokenizer = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    static = distil(args.model)
    print(f"static embeddings: {static.shape[0]} tokens x {static.shape[1]} ({time.perf_counter() - started:.0f} s)")
    data = splits(held_out=args.held_out)
    train, held_out = data["train"], data["held_out"]
    print(f"items: {len(train)} training, {len(held_out)} held out")

    transformer = load_transformer(args.model) if hyper.contextual else None
    folds = cross_validate(train, tokenizer, static, hyper, transformer)
    stack = stacking(folds, train, hyper, args.target_recall) if folds.contextual is not None else None
    oof = sigmoid(
        folds.fast if stack is None or folds.contextual is None else stack.apply(folds.fast, folds.contextual)
    )
    threshold = choose_threshold(oof, train, args.target_recall)
    cv = rates(oof, train, threshold)
    print(f"cross-validated threshold {threshold:.3f}: {json.dumps(_headline(cv))}")
    if args.cv_only:
        for target in (0.93, 0.95, 0.96, 0.97, 0.98):
            t = choose_threshold(oof, train, target)
            r = rates(oof, train, t)
            print(
                f"  recall target {target}: threshold {t:.3f}, same-topic FPR {r['fpr_benign_same_topic']['rate']}, "
                f"general FPR {r['fpr_benign_general']['rate']}, long documents: recall "
                f"{r['long_document_recall']['rate']} FPR {r['long_document_fpr']['rate']}"
            )
        if args.show_errors:
            for score, item in sorted(zip(oof, train, strict=True), key=lambda p: p[0]):
                wrong = (score < threshold) if item.sensitive else (score >= threshold)
                if wrong and item.source == "handwritten":
                    label = "MISS" if item.sensitive else "FP  "
                    print(f"  {label} {score:.3f} {item.id}: {(item.text or '')[:110]!r}")
        return 0

    enc = encode(train, tokenizer, hyper.windows)
    mu = corpus_mean(enc, static)
    model = fit(enc, static, hyper, mu)
    arrays = fold_head(model, fit_categories(enc, static, hyper, mu), static)
    contextual_config: dict[str, Any] | None = None
    if stack is not None:
        # The regression, with the stacking folded in: inside the band, logit = fast + weight . e + bias.
        w, b = fit_contextual(model, enc, static, transformer, hyper)
        arrays[CONTEXTUAL_WEIGHT] = (stack.scale * w).astype(np.float32)
        contextual_config = {
            "band": [round(stack.band[0], 6), round(stack.band[1], 6)],
            "bias": stack.scale * (b - stack.offset),
            "reads": "MiniLM itself on the head's top window, [CLS] window [SEP], mean of the last layer, "
            "L2-normalised, Linear layers int8 (routing/egress_context.py)",
        }
    config = {
        "format": FORMAT,
        "model": "sentence-transformers/all-MiniLM-L6-v2 (static token embeddings, mean of [CLS] t [SEP])",
        "model_files": model_digests(args.model),
        "windows": list(hyper.windows),
        "prior_weight": hyper.prior_weight,
        "threshold": round(threshold, 4),
        "categories": list(CATEGORIES),
        "bigram_buckets": BIGRAM_BUCKETS if hyper.bigrams else 0,
        "bigram_mult": BIGRAM_MULT,
        "features": list(FEATURES),
        "feature_scale": FEATURE_SCALE,
        "hyper": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(hyper).items()},
        "data_sha256": _data_digest(),
        "cross_validation": cv,
    }
    if contextual_config is not None:
        config["contextual"] = contextual_config
    digest = write_artefact(args.out, arrays, config)
    print(f"wrote {args.out} (manifest SHA-256 {digest})")

    from routing.egress_review import EgressReviewer

    reviewer = EgressReviewer.load(args.out, args.model)
    scores = np.array([_score(reviewer, i) for i in held_out])
    # The reviewer (numpy, folded float16 table) must read the held-out items as the trained model does.
    held_enc = encode(held_out, tokenizer, hyper.windows)
    fast, windows = top_windows(held_enc, window_logits(model, held_enc, static))
    if stack is not None:
        fast = stack.apply(fast, embed_windows(transformer, windows) @ w + b)
    trained = sigmoid(fast)
    parity = float(np.max(np.abs(trained - scores)))
    print(f"largest difference between the trained model and the written artefact: {parity:.5f}")
    if parity > 0.02:
        print("the artefact does not reproduce the trained model", file=sys.stderr)
        return 1
    hits = [
        (reviewer.review_texts(raw_texts(i), 10).categories, i.categories)
        for i in held_out
        if i.sensitive and i.source == "handwritten"
    ]
    flagged = [(got, want) for got, want in hits if got]
    category_hits = sum(1 for got, want in flagged if {g.removeprefix("semantic_") for g in got} & set(want))
    print(f"held-out sensitive items flagged with at least one right category: {category_hits}/{len(flagged)}")
    oof_curve = pr_curve(oof, train)
    held_curve = pr_curve(scores, held_out)
    report = {
        "artefact_manifest_sha256": digest,
        "threshold": round(threshold, 4),
        "target_recall_cross_validated": args.target_recall,
        "artefact_vs_trained_max_abs_diff": round(parity, 6),
        "held_out_set": args.held_out,
        "held_out": rates(scores, held_out, threshold),
        "held_out_category_right": {"flagged": len(flagged), "a_right_category": category_hits},
        "cross_validation": cv,
        "curves": {"held_out": held_curve, "cross_validation": oof_curve},
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(
        {"held-out split": held_curve, "cross-validation (training split)": oof_curve},
        threshold,
        args.report / "pr_curve.png",
    )
    print(f"held-out: {json.dumps(_headline(report['held_out']))}")
    print(f"wrote {args.report / 'report.json'} and {args.report / 'pr_curve.png'}")
    return 0


def _score(reviewer: Any, item: Item) -> float:
    if item.request is not None:
        return reviewer.review_request(item.request, deadline_s=10).score
    return reviewer.review_texts([item.text or ""], deadline_s=10).score


def _headline(r: dict[str, Any]) -> dict[str, Any]:
    return {
        k: r[k]
        for k in (
            "recall_sensitive",
            "fpr_benign_same_topic",
            "fpr_benign_general",
            "fpr_reference_text",
            "generated_recall_sensitive",
            "generated_fpr_benign",
            "long_document_recall",
            "long_document_fpr",
        )
    }


def _data_digest() -> str:
    """SHA-256 over the data folder's items and code, the fresh sets included (a run may train on them)."""
    from models.egress_data import DATA_DIR

    digest = hashlib.sha256()
    for path in sorted([*DATA_DIR.glob("*"), *DATA_DIR.glob("fresh/*")]):
        if path.is_file() and path.suffix in (".txt", ".py"):
            digest.update(str(path.relative_to(DATA_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
