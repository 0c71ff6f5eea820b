"""Labelled data for the egress review (routing/egress_review.py): handwritten items, and items generated from them.

Handwritten items live in ``*.txt`` beside this file, one per category plus ``general.txt``, ``everyday*.txt``
(everyday OFFICIAL work), ``mixed.txt`` and ``sensitive_more.txt`` (harder items), ``twins_train.txt`` (training
only: ``TRAINING_ONLY``); ``reference.txt`` is generated
once by ``make_reference.py`` and committed. Each item is a header line and the text up to the next header::

    === S covert_source | cs01 | chat
    Can you help me write up the tasking for our CHIS ...

``S`` is sensitive (the review must raise it to OFFICIAL-SENSITIVE), ``B`` benign (must stay OFFICIAL); then the
categories (comma-separated; for benign items, the topic they share with their sensitive twin, ``general`` for
everyday work, ``reference`` for the documentation, code and word salad of ``reference.txt``), the
group and the form (chat, email, note, minutes, guidance, training). A sensitive item and its benign twin share a
group, and the held-out split is drawn by group, so no twin of a held-out item is ever trained on.

Fresh held-out sets (``fresh/NAME.txt``, read by ``fresh_held_out`` only, never by ``handwritten``) were written
later, each by a helper that saw none of the project (its brief beside it, ``fresh/NAME.brief.md``), to score the
review on material nobody tuned it on (``sovereign models score-egress-review``). A set is held out until a newer
one exists: ``splits(held_out=NAME)`` trains on everything else, the other fresh sets included.

Generated items (``generated``) are built from the handwritten ones of the same split only: the same text inside the
requests people actually send (instructions around it, a system prompt, earlier turns, an e-mail envelope), long
documents of several items (benign throughout, or with one sensitive item somewhere inside), and the short or odd
texts that real traffic carries (greetings, code, random identifiers, one-line "what is X?" questions on the
categories' own terms).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.egress_review import CATEGORIES

DATA_DIR = Path(__file__).resolve().parent
HELD_OUT_PERCENT = 30
_HEADER = re.compile(r"^=== ([SB]) ([a-z_,]+) \| ([a-z0-9]+) \| ([a-z]+)\s*$")


@dataclass(frozen=True)
class Item:
    id: str
    sensitive: bool
    categories: tuple[str, ...]  # sensitive: what makes it so; benign: the topic it shares (or "general")
    group: str
    form: str
    source: str  # handwritten | generated
    text: str | None = None
    request: dict[str, Any] | None = field(default=None, hash=False, compare=False)  # an OpenAI body instead

    @property
    def held_out(self) -> bool:
        return held_out(self.group)


# Files written after the held-out figures were first reported: their groups are training only, so that the held-out
# split stays the same items (and the figures before and after them compare).
TRAINING_ONLY = frozenset({"twins_train"})


def held_out(group: str) -> bool:
    """Whether a group belongs to the held-out split (fixed by the group's name, never by the data)."""
    if group.partition(":")[0] in TRAINING_ONLY:
        return False
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


def handwritten() -> list[Item]:
    items: list[Item] = []
    for path in sorted(DATA_DIR.glob("*.txt")):
        items.extend(_parse(path))
    return items


FRESH_DIR = DATA_DIR / "fresh"


def fresh_sets() -> list[str]:
    """The fresh held-out sets' names, oldest first."""
    return sorted(path.stem for path in FRESH_DIR.glob("*.txt"))


def fresh_held_out(name: str) -> list[Item]:
    """One fresh held-out set: scored by ``models/egress_fresh.py``, trained on only once a newer one holds out."""
    if name not in fresh_sets():
        raise ValueError(f"no fresh held-out set {name!r} (there are: {', '.join(fresh_sets())})")
    return list(_parse(FRESH_DIR / f"{name}.txt"))


def _parse(path: Path) -> Iterator[Item]:
    header: re.Match[str] | None = None
    lines: list[str] = []
    counts: dict[str, int] = {}

    def item() -> Item:
        assert header is not None
        label, cats, group, form = header.groups()
        categories = tuple(cats.split(","))
        unknown = set(categories) - {*CATEGORIES, "general", "reference"}
        if unknown or not "\n".join(lines).strip():
            raise ValueError(f"{path.name}: bad item in group {group} ({unknown or 'empty'})")
        n = counts[group] = counts.get(group, 0) + 1
        source = "generated" if path.stem == "reference" else "handwritten"
        return Item(
            f"{path.stem}:{group}:{label}{n}",
            label == "S",
            categories,
            f"{path.stem}:{group}",
            form,
            source,
            text="\n".join(lines).strip(),
        )

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and header is None:
            continue
        match = _HEADER.match(line)
        if line.startswith("===") and not match:
            raise ValueError(f"{path.name}: malformed header {line!r}")
        if match:
            if header is not None:
                yield item()
            header, lines = match, []
        elif header is not None:
            lines.append(line)
    if header is not None:
        yield item()


# -- generated items ---------------------------------------------------------------------------------------------

_ASKS = (
    "Can you tidy this up for me?\n\n{t}",
    "Please summarise the following in three bullet points:\n{t}",
    "{t}\n\nThanks!",
    "Proofread please: {t}",
    'Turn this into a formal note for the file:\n"{t}"',
    "{t}\n\nCan you make that shorter?",
    "Could you check the spelling and grammar in this?\n---\n{t}\n---",
    "I need this in plain English for a colleague: {t}",
    "Rewrite the text below in a more professional tone.\n\n{t}",
    "quick one - {t}",
    "{t}\n\nWhat would you suggest?",
    "Here's what I've got so far:\n{t}\nAny improvements?",
    "Please draft a reply to this.\n\n> {t}",
    "Make a to-do list from this:\n{t}",
    "Context for you: {t}\n\nKeep your answer brief.",
    "Hi, I hope you can help. {t}",
    "Forwarding for info:\n\n{t}",
    "Put this into a table if you can:\n{t}",
    "{t}\n\n(please keep it under 100 words)",
    "Translate to Welsh:\n{t}",
)
_SYSTEM = (
    "You are a helpful assistant for staff in a government department. Be concise and accurate.",
    "You are a writing assistant. Improve clarity and tone. Do not add facts.",
    "You help public servants draft documents. Use plain English and British spelling.",
    "Answer as briefly as possible.",
)
_NAMES = ("Sam", "Alex", "Priya", "Tom", "Fiona", "Kwame", "Rachel", "Gareth", "Mei", "Joe")
_SUBJECTS = ("update", "follow-up", "for info", "today", "quick question", "notes", "next steps")
_ASSISTANT = (
    "Sure - here is a tidier version.",
    "Happy to help. Could you tell me who the audience is?",
    "Here are the key points in brief.",
    "Of course. I have kept your meaning and shortened it.",
)
_WORDS = (
    "apple",
    "river",
    "window",
    "seven",
    "budget",
    "quarter",
    "meeting",
    "paper",
    "green",
    "london",
    "spring",
    "data",
    "report",
    "table",
    "chair",
    "morning",
    "office",
    "print",
    "coffee",
    "number",
    "system",
    "review",
    "plan",
    "access",
    "update",
    "fix",
    "screen",
    "light",
    "tuesday",
)


# Terms of the seven categories' fields, for short definitional questions ("Define bail."): the commonest benign
# form of a question on these topics, and the shortest texts the review sees. Split between train and held out by
# the term itself, like the handwritten groups.
_TERMS = (
    "bail",
    "remand",
    "parole",
    "a CHIS",
    "RIPA",
    "an informant",
    "an undercover officer",
    "a handler",
    "a criminal conduct authorisation",
    "directed surveillance",
    "intrusive surveillance",
    "a search warrant",
    "a dawn raid",
    "PACE",
    "a risk assessment",
    "CCTV",
    "a perimeter fence",
    "a category A prisoner",
    "a prison escort",
    "key control",
    "a panic alarm",
    "witness protection",
    "UKPPS",
    "special measures",
    "a protected person",
    "an anonymity order",
    "a refuge",
    "a non-molestation order",
    "a looked after child",
    "a child protection plan",
    "a section 47 enquiry",
    "an EPO",
    "foster care",
    "a care order",
    "safeguarding",
    "child criminal exploitation",
    "county lines",
    "grooming",
    "the ACCT process",
    "self-harm",
    "a section 136",
    "the Mental Health Act",
    "methadone",
    "PrEP",
    "a DNACPR",
    "an eating disorder",
    "psychosis",
    "an arrest warrant",
    "a controlled delivery",
    "a Gold commander",
    "a public order unit",
    "a stop and search",
    "a MAPPA meeting",
    "a MARAC",
    "coercive control",
    "a DBS check",
    "a disciplinary hearing",
    "a grievance",
    "benefit fraud",
    "a restraining order",
    "a stalking protection order",
    "an inquest",
    "a coroner",
    "the Victims' Code",
    "a youth offending team",
    "a secure children's home",
    "a young offender institution",
    "probation",
    "a licence condition",
    "an approved premises",
    "a tag",
    "a curfew",
    "a caution",
    "a conviction",
)
_DEFINE = (
    "Define {t}.",
    "What is {t}?",
    "Explain {t} in simple terms.",
    "What does {t} mean?",
    "{T}: what is it and how does it work?",
    "Give me a one-paragraph explanation of {t}.",
    "what's {t}",
    "Can you explain {t} for a new starter?",
    "How would you describe {t} to a teenager?",
    "Quick question - what is {t}?",
)


def _definitions(rng: random.Random, held: bool) -> Iterator[Item]:
    for term in _TERMS:
        if held_out("term:" + term) != held:
            continue
        for k, form in enumerate(rng.sample(_DEFINE, 2)):
            text = form.format(t=term, T=term[:1].upper() + term[1:])
            yield Item(
                f"gen:define:{term}:{k}", False, ("general",), f"gen:define:{term}", "chat", "generated", text=text
            )


def _wrap(rng: random.Random, item: Item, n: int) -> Iterator[Item]:
    assert item.text is not None
    for k in range(n):
        style = rng.random()
        if style < 0.45:
            text = rng.choice(_ASKS).format(t=item.text)
            request = {"model": "default", "messages": [{"role": "user", "content": text}]}
        elif style < 0.7:
            text = rng.choice(_ASKS).format(t=item.text)
            request = {
                "model": "default",
                "messages": [{"role": "system", "content": rng.choice(_SYSTEM)}, {"role": "user", "content": text}],
            }
        elif style < 0.85:
            name = rng.choice(_NAMES)
            text = f"From: {name}\nSubject: {rng.choice(_SUBJECTS)}\n\n{item.text}\n\nThanks,\n{name}"
            request = {
                "model": "default",
                "messages": [{"role": "user", "content": "Draft a reply to this email:\n\n" + text}],
            }
        else:
            request = {
                "model": "default",
                "messages": [
                    {"role": "user", "content": rng.choice(("hi", "Can you help me with a document?", "morning!"))},
                    {"role": "assistant", "content": rng.choice(_ASSISTANT)},
                    {"role": "user", "content": [{"type": "text", "text": item.text}]},
                ],
            }
        yield Item(
            f"gen:wrap:{item.id}:{k}",
            item.sensitive,
            item.categories,
            item.group,
            item.form,
            "generated",
            request=request,
        )


def _composite(rng: random.Random, benign: list[Item], sensitive: Item | None, k: int | str, size: int) -> Item:
    chosen = rng.sample(benign, size)
    parts = [b.text or "" for b in chosen]
    if sensitive is not None:
        parts.insert(rng.randrange(len(parts) + 1), sensitive.text or "")
    text = "\n\n".join(parts)
    if sensitive is None:
        topic = "reference" if all(b.categories == ("reference",) for b in chosen) else "general"
        return Item(f"gen:doc:{k}", False, (topic,), f"gen:doc:{k}", "document", "generated", text=text)
    return Item(
        f"gen:doc:{k}:{sensitive.id}", True, sensitive.categories, sensitive.group, "document", "generated", text=text
    )


def _odd(rng: random.Random, k: int) -> Item:
    kind = k % 4
    if kind == 0:
        text = f"canary{rng.getrandbits(48):012x}"
    elif kind == 1:
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 40)))
    elif kind == 2:
        text = f"payload {rng.randint(0, 10**6)} {rng.choice(_WORDS)} {rng.getrandbits(32):08x}"
    else:
        text = rng.choice(
            (
                "x",
                "a b",
                "go",
                "done",
                "and?",
                "Who is this?",
                "Look up the customer",
                "ok thanks",
                "def fibonacci(n):",
                "SELECT 1;",
                "{}",
                "[1, 2, 3]",
                "hello there world",
            )
        )
    return Item(f"gen:odd:{k}", False, ("general",), f"gen:odd:{k}", "odd", "generated", text=text)


def generated(
    items: list[Item], *, seed: int = 19, wraps: int = 2, documents: int = 200, held: bool = False
) -> list[Item]:
    """Items built from ``items`` (one split's handwritten items, ``held`` says which), deterministic for a seed."""
    rng = random.Random(seed)
    out: list[Item] = []
    for item in items:
        out.extend(_wrap(rng, item, wraps))
    benign = [i for i in items if not i.sensitive]
    sensitive = [i for i in items if i.sensitive]
    if len(benign) >= 40:
        for k in range(documents):
            chosen = rng.choice(sensitive) if sensitive and k % 2 else None
            out.append(_composite(rng, benign, chosen, k, rng.randint(3, 9)))
        # Long documents (about 1,000 to 3,000 tokens), where one window of many must decide.
        for k in range(documents // 2):
            chosen = rng.choice(sensitive) if sensitive and k % 2 else None
            out.append(_composite(rng, benign, chosen, f"long{k}", rng.randint(15, 35)))
    out.extend(_odd(rng, k) for k in range(documents // 2))
    out.extend(_definitions(rng, held))
    return out


def splits(seed: int = 19, *, held_out: str = "split") -> dict[str, list[Item]]:
    """``train`` and ``held_out``, each its handwritten items plus items generated from those alone. ``held_out``:
    ``"split"``, the groups ``held_out`` picks (the fresh sets are not read), or a fresh set's name: that set alone
    is held out, and every other item, the other fresh sets' included, trains."""
    items = handwritten()
    if held_out != "split":
        test = fresh_held_out(held_out)
        train = items + [item for name in fresh_sets() if name != held_out for item in fresh_held_out(name)]
        return {"train": train + generated(train, seed=seed), "held_out": test}
    train = [i for i in items if not i.held_out]
    test = [i for i in items if i.held_out]
    return {
        "train": train + generated(train, seed=seed),
        "held_out": test + generated(test, seed=seed + 1, documents=100, held=True),
    }
