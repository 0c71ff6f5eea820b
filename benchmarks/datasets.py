"""Prompts for the load generator: a seeded random dataset, or prompts from a JSONL file.

Lengths of random prompts are in words of a small common vocabulary (about one token each for BPE tokenizers);
the figures that matter (prompt and output tokens) are read back from the server's ``usage``, never counted here.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

# Short, common English words: each is a single token in the usual BPE vocabularies (GPT-2, Llama, SmolLM2).
_WORDS = (
    "the of and to in is it that for on with as was at by be this are from or have an they which one you were "
    "her all she there would their we him been has when who will more no if out so said what up its about into "
    "than them can only other new some could time these two may then do first any my now such like our over man "
    "me even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long get"
)
_VOCAB = _WORDS.split()


@dataclass(frozen=True)
class Prompt:
    """One request's input: chat messages or a completion prompt, and the output length to ask for."""

    text: str
    output_len: int


def _length(rng: random.Random, mean: int, range_ratio: float) -> int:
    """A length drawn uniformly from ``mean * [1 - r, 1 + r]`` (vLLM's ``--random-range-ratio``), at least 1."""
    low = max(1, round(mean * (1 - range_ratio)))
    high = max(low, round(mean * (1 + range_ratio)))
    return rng.randint(low, high)


def random_prompts(n: int, input_len: int, output_len: int, range_ratio: float = 0.0, seed: int = 0) -> list[Prompt]:
    """``n`` prompts of about ``input_len`` words asking for about ``output_len`` tokens; same seed, same set."""
    if not 0.0 <= range_ratio < 1.0:
        raise ValueError("range ratio must be in [0, 1)")
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        words = [rng.choice(_VOCAB) for _ in range(_length(rng, input_len, range_ratio))]
        # A distinct prefix per request defeats prefix caching, which would otherwise flatter later requests.
        prompts.append(Prompt(f"{i} " + " ".join(words), _length(rng, output_len, range_ratio)))
    return prompts


def jsonl_prompts(path: Path, n: int, default_output_len: int, seed: int = 0, shuffle: bool = False) -> list[Prompt]:
    """Prompts from a JSONL file: each line ``{"prompt": str, "output_len"?: int}`` (``text`` also accepted).

    With fewer lines than ``n`` the file is cycled, so a small file still drives a long run.
    """
    items: list[Prompt] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            text = obj.get("prompt", obj.get("text")) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{lineno}: expected an object with a string 'prompt'")
            items.append(Prompt(text, int(obj.get("output_len") or default_output_len)))
    if not items:
        raise ValueError(f"{path}: no prompts")
    if shuffle:
        random.Random(seed).shuffle(items)
    return [items[i % len(items)] for i in range(n)]
