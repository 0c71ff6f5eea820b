"""UK Government Security Classifications, ordered, and the one place their spellings are parsed."""

from __future__ import annotations

from enum import IntEnum


class Level(IntEnum):
    """A classification level. Integer order is sensitivity order, so ``max()`` and ``<=`` mean what they say."""

    OFFICIAL = 0
    OFFICIAL_SENSITIVE = 1
    SECRET = 2
    TOP_SECRET = 3

    @property
    def label(self) -> str:
        """The canonical spelling used on the wire: ``OFFICIAL-SENSITIVE``, ``TOP SECRET``."""
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> Level:
        """Parse a caller- or config-supplied level; raise ``ValueError`` for anything that is not a level.

        Accepts the canonical labels, the enum names, and the common separators (``OFFICIAL SENSITIVE``,
        ``official_sensitive``, ``TOP-SECRET``), case-insensitively.
        """
        key = " ".join(text.replace("-", " ").replace("_", " ").replace(":", " ").split()).upper()
        try:
            return _BY_KEY[key]
        except KeyError:
            raise ValueError(f"not a classification level; expected one of {', '.join(_LABELS.values())}") from None

    def __str__(self) -> str:
        return self.label


_LABELS = {
    Level.OFFICIAL: "OFFICIAL",
    Level.OFFICIAL_SENSITIVE: "OFFICIAL-SENSITIVE",
    Level.SECRET: "SECRET",
    Level.TOP_SECRET: "TOP SECRET",
}
_BY_KEY = {label.replace("-", " "): level for level, label in _LABELS.items()}

LEVEL_LABELS: tuple[str, ...] = tuple(_LABELS.values())
