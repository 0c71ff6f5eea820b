"""`sovereign models score-egress-review [--set NAME] [--artefact DIR] [--model DIR] [--json OUT]`: the egress
review on a fresh held-out set (``models/egress_data/fresh``; the newest by default), which no training run reads
while it is the newest.

Two figures per category, both on the fresh set's sensitive items and their benign same-topic twins:

- *review alone*: the review's own verdict on every item, whatever the rules say (the issue's bar: recall on
  sensitive items, false positives on benign same-topic items);
- *rules, then review*: what a department sees, the server's order (the review reads only what the rules call
  OFFICIAL), as ``sovereign classify --egress-review`` does: an item is kept local when either keeps it.

Each set was written by a helper that never saw the project's code, data, results or notes, from a brief that
named the categories and asked for benign twins as specific as the sensitive items (``fresh/NAME.brief.md``, as
it was given). It is scored, never tuned on: a change chosen by looking at these items would make the
figures another cross-validation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from models.egress_data import Item, fresh_held_out, fresh_sets
from routing.classify import classify_text
from routing.egress_review import DEFAULT_ARTEFACT, EgressReviewer, default_model_dir
from routing.levels import Level

DEADLINE_S = 10.0  # offline: generous, as `sovereign classify --egress-review`


def score(items: list[Item], reviewer: EgressReviewer) -> dict[str, Any]:
    """Counts of items kept local, by (label, category), for the review alone and for the rules then the review."""
    review: Counter[tuple[str, str]] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    for item in items:
        key = ("sensitive" if item.sensitive else "benign", item.categories[0])
        total[key] += 1
        flagged = reviewer.review_texts([item.text or ""], DEADLINE_S).sensitive
        review[key] += flagged
        both[key] += flagged or classify_text(item.text or "").level > Level.OFFICIAL
    return {name: _rates(kept, total) for name, kept in (("review_alone", review), ("rules_then_review", both))}


def _rates(kept: Counter[tuple[str, str]], total: Counter[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, rate in (("sensitive", "recall"), ("benign", "false_positive_rate")):
        keys = sorted(k for k in total if k[0] == label)
        n, k = sum(total[x] for x in keys), sum(kept[x] for x in keys)
        out[rate] = {"kept_local": k, "n": n, "rate": round(k / n, 4) if n else None}
        out[f"{rate}_by_category"] = {x[1]: f"{kept[x]}/{total[x]}" for x in keys}
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign models score-egress-review", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=fresh_sets(), default=fresh_sets()[-1], help="fresh set (default newest)")
    parser.add_argument("--artefact", type=Path, default=DEFAULT_ARTEFACT, help="artefact folder (default: shipped)")
    parser.add_argument("--model", type=Path, default=None, help="prepared MiniLM folder (default: as the server)")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    reviewer = EgressReviewer.load(args.artefact, args.model or default_model_dir())
    items = fresh_held_out(args.set)
    result = {
        "set": args.set,
        "items": len(items),
        "artefact_digest": reviewer.digest,
        "threshold": reviewer.threshold,
        **score(items, reviewer),
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
