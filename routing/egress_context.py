"""The egress review's second stage: MiniLM itself reads the one window the fast head scores highest.

The fast head (``routing.egress_review``) reads static token embeddings, so it sees which words a text uses, not how
they relate; it is least sure near its threshold, where most of its false positives lie. There, and only there, the
window it scored highest goes through the transformer (``[CLS] window [SEP]``, mean of the last layer,
L2-normalised; the model's Linear layers quantised to int8 for speed), and a logistic regression on that embedding
moves the window's logit::

    logit = fast_logit + weight . embedding + bias      where band_low < fast_logit < band_high
    logit = fast_logit                                   elsewhere

The weight and bias already carry the stacking scale (``models/egress_train.py`` fits the regression and folds in
the cross-validated standardisation), so the stage is one matrix product after the transformer. The same code
embeds windows for training and for serving, so both read a window alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CLS, SEP = 101, 102


def load_transformer(model_dir: Path) -> Any:
    """MiniLM from ``model_dir`` (its files already checked against the artefact's digests), Linear layers int8."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a server's log, not a terminal
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    # torch.ao's dynamic quantisation is deprecated in favour of torchao, which is not a dependency; torch is pinned
    # (pyproject.toml), so the call is what this torch offers. Its warning would repeat at every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def embed_windows(transformer: Any, windows: Sequence[np.ndarray]) -> np.ndarray:
    """(windows x hidden): each window of word-piece ids, as ``[CLS] ids [SEP]``, mean-pooled and L2-normalised.

    One window per forward pass, never a padded batch: dynamic quantisation scales each input tensor as a whole, so
    a window read beside others (or beside padding) would embed differently from the same window read alone, as
    the server reads it."""
    import torch

    out = np.zeros((len(windows), transformer.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for i, window in enumerate(windows):
            ids = torch.tensor([[CLS, *(int(t) for t in window), SEP]])
            hidden = transformer(input_ids=ids).last_hidden_state[0]
            out[i] = torch.nn.functional.normalize(hidden.mean(dim=0), dim=-1).numpy()
    return out


class ContextualStage:
    def __init__(self, transformer: Any, weight: np.ndarray, bias: float, band: tuple[float, float]) -> None:
        self._transformer = transformer
        self.weight = weight.astype(np.float32)
        self.bias = float(bias)
        self.band_low, self.band_high = float(band[0]), float(band[1])

    def applies(self, fast_logit: float) -> bool:
        return self.band_low < fast_logit < self.band_high

    def logit(self, fast_logit: float, window: np.ndarray) -> float:
        """The window's logit after the second stage, for a ``fast_logit`` inside the band (``applies``)."""
        embedding = embed_windows(self._transformer, [window])[0]
        return fast_logit + float(embedding @ self.weight) + self.bias
