"""Cross-validation only: would a contextual second stage on the fast head's top windows lower false positives?

``python -m models.egress_contextual_cv [--model DIR]`` (about 7 minutes on a 2-vCPU VM; writes nothing). An
exploration for issue 19, not what the server runs: ``benchmarks/RESULTS.md`` ("A contextual second stage") has its
figures and what it would cost.

The same 5 folds as ``models.egress_train.cross_validate`` (groups shuffled with ``Hyper.seed``, twins together),
over the training split only (the held-out split is never read). In each fold:

1. the shipped head (``Hyper()``) is trained on the other folds and scores every window of every item;
2. each training item's top window goes through MiniLM itself (``[CLS] window [SEP]``, mean of the last layer,
   normalised), and a logistic regression on those embeddings learns the item's label;
3. each held-back item's top ``TOP_WINDOWS`` windows are embedded and scored by it.

A text's combined score is ``z(fast) + a * z(contextual)`` (z: standardised over the out-of-fold scores), with the
contextual score of the top window or the higher of the top two; "gated" variants change the score only where the
fast one lies within ``band`` standard deviations of its own 96%-recall threshold, as a server would (it pays for
the transformer only there). Each variant's threshold is chosen on its own out-of-fold scores, as the trainer
chooses the shipped one.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.egress_data import Item, splits
from models.egress_train import (
    DEFAULT_MODEL,
    Encoded,
    Hyper,
    _tensors,
    choose_threshold,
    corpus_mean,
    distil,
    encode,
    fit,
    rates,
)

TOP_WINDOWS = 2
WEIGHT_DECAYS = (1e-4, 1e-3)
CLS, SEP, PAD = 101, 102, 0


def window_logits(models: list[Any], enc: Encoded, static: np.ndarray) -> np.ndarray:
    """The fast head's logit of every window (the members averaged, as ``predict`` does before its maximum)."""
    import torch

    with torch.no_grad():
        t = _tensors(enc, static)
        return torch.stack([m(t)[0] for m in models]).mean(dim=0).numpy()


def top_windows(enc: Encoded, logits: np.ndarray, k: int) -> list[list[tuple[np.ndarray, float]]]:
    """Per item, its ``k`` highest windows: (token ids, fast logit), highest first."""
    out = []
    for d in range(enc.n):
        mine = np.where(enc.doc == d)[0]
        best = mine[np.argsort(-logits[mine])][:k]
        out.append([(enc.ids[enc.starts[i] : enc.ends[i]], float(logits[i])) for i in best])
    return out


def embed(transformer: Any, windows: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """MiniLM's mean-pooled, normalised last layer for each window of word-piece ids."""
    import torch

    out: list[Any] = [None] * len(windows)
    order = np.argsort([len(w) for w in windows])
    with torch.inference_mode():
        for b in range(0, len(windows), batch):
            idx = order[b : b + batch]
            rows = [[CLS, *map(int, windows[i]), SEP] for i in idx]
            width = max(map(len, rows))
            ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
            mask = (ids != PAD).long()
            hidden = transformer(input_ids=ids, attention_mask=mask).last_hidden_state
            mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            for j, i in enumerate(idx):
                out[i] = torch.nn.functional.normalize(mean[j], dim=-1).numpy()
    return np.stack(out)


def fit_logistic(x: np.ndarray, y: np.ndarray, weight_decay: float) -> tuple[np.ndarray, float]:
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


def out_of_fold(items: list[Item], model_dir: Path) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Out-of-fold fast logits (per item) and contextual logits (per item x top window, per weight decay)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    hyper = Hyper()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    static = distil(model_dir)
    transformer = AutoModel.from_pretrained(model_dir).eval()
    groups = sorted({i.group for i in items})
    random.Random(hyper.seed).shuffle(groups)
    fold_of = {g: n % 5 for n, g in enumerate(groups)}
    fast = np.zeros(len(items))
    contextual = {wd: np.zeros((len(items), TOP_WINDOWS)) for wd in WEIGHT_DECAYS}
    for f in range(5):
        started = time.perf_counter()
        train = [i for i in items if fold_of[i.group] != f]
        test_idx = [n for n, i in enumerate(items) if fold_of[i.group] == f]
        enc = encode(train, tokenizer, hyper.windows)
        models = fit(enc, static, hyper, corpus_mean(enc, static))
        test_enc = encode([items[n] for n in test_idx], tokenizer, hyper.windows)
        tops = top_windows(test_enc, window_logits(models, test_enc, static), TOP_WINDOWS)
        fast[test_idx] = [t[0][1] for t in tops]
        train_tops = top_windows(enc, window_logits(models, enc, static), 1)
        x_train = embed(transformer, [t[0][0] for t in train_tops])
        x_test = [embed(transformer, [t[min(k, len(t) - 1)][0] for t in tops]) for k in range(TOP_WINDOWS)]
        for wd, scores in contextual.items():
            w, b = fit_logistic(x_train, enc.y, wd)
            for k in range(TOP_WINDOWS):
                scores[test_idx, k] = x_test[k] @ w + b
        print(f"fold {f}: {time.perf_counter() - started:.0f} s", flush=True)
    return fast, contextual


def summary(name: str, scores: np.ndarray, items: list[Item]) -> str:
    cells = []
    for target in (0.95, 0.96, 0.97):
        r = rates(scores, items, choose_threshold(scores, items, target))
        cells.append(
            f"{target}: same-topic {r['fpr_benign_same_topic']['flagged']}/{r['fpr_benign_same_topic']['n']}, "
            f"everyday {r['fpr_benign_general']['flagged']}, reference {r['fpr_reference_text']['flagged']}, "
            f"long docs recall {r['long_document_recall']['rate']} FPR {r['long_document_fpr']['rate']}, "
            f"generated recall {r['generated_recall_sensitive']['rate']} FPR {r['generated_fpr_benign']['rate']}"
        )
    return f"{name}\n  " + "\n  ".join(cells)


def standardised(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.egress_contextual_cv", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="prepared MiniLM folder (default %(default)s)"
    )
    args = parser.parse_args(argv)
    items = splits()["train"]
    fast, contextual = out_of_fold(items, args.model)
    print(summary("fast head alone (shipped)", fast, items))
    fz = standardised(fast)
    threshold = choose_threshold(fz, items, 0.96)
    for wd, scores in contextual.items():
        print(summary(f"contextual alone, top window, weight decay {wd}", scores[:, 0], items))
        for name, ctx in (("top window", scores[:, 0]), ("higher of top two", scores.max(axis=1))):
            cz = standardised(ctx)
            for a in (0.25, 0.5, 1.0):
                print(summary(f"fast + {a} x contextual ({name}, weight decay {wd})", fz + a * cz, items))
            for band in (0.5, 1.0):
                for a in (0.5, 1.0):
                    gated = np.where(np.abs(fz - threshold) < band, fz + a * cz, fz)
                    print(summary(f"gated, band {band}, {a} x contextual ({name}, weight decay {wd})", gated, items))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
