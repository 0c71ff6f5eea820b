"""``phonenumbers.number_type`` for +44 numbers, on phonenumbers' own metadata, in a few microseconds.

The phone row validates every candidate, and ``number_type`` is most of what that costs (about 20 us: it
matches each type's pattern with ``re`` in turn, for the number's region and again to find the region).
This module answers the same question from the same metadata, loaded from the installed ``phonenumbers``
at import: one RE2 full-match set per region gives every pattern that matches, and the two functions below
read them in the order phonenumbers does (``_region_code_for_number_from_list``: GB, then the Crown
dependencies GG, IM, JE, by leading digits where the metadata has them and by validity otherwise;
``_number_type_helper``: premium rate, toll free, shared cost, VoIP, personal, pager, UAN, voicemail, then
fixed line and mobile). ``tests/routing/test_phones.py`` checks it against ``phonenumbers.number_type``
over every four-digit prefix of every length the phone row can produce.

The input is a national significant number of ASCII digits, at most a dozen or so bytes: RE2 keeps even
that linear.
"""

from __future__ import annotations

import re2
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumberType

from routing.detectors_base import Regex
from serving.thirdparty import re2_extension

_re2 = re2_extension()  # re2._re2, at the version it was written for (serving/thirdparty.py)

__all__ = ["uk_number_type"]

# _number_type_helper's order; fixed line and mobile come last and are combined below.
_ORDERED = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)
_GENERAL, _FIXED, _MOBILE = len(_ORDERED), len(_ORDERED) + 1, len(_ORDERED) + 2
_DESCS = (*(name for name, _ in _ORDERED), "general_desc", "fixed_line", "mobile")


_START = _re2.RE2.Anchor.ANCHOR_START


def _options() -> re2.Options:
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.log_errors = False
    return opts


class _Region:
    """One region's number-type patterns, as phonenumbers' ``_is_number_matching_desc`` reads them: the
    length must be one of the desc's possible lengths (when it lists any) and the pattern must match all of
    the number; a missing desc or an empty pattern never matches."""

    def __init__(self, metadata: PhoneMetadata) -> None:
        self.same_mobile_and_fixed = bool(metadata.same_mobile_and_fixed_line_pattern)
        # The extension's objects, not the re2 package's wrappers: the phone row calls these for every
        # candidate (up to three regions each), and the wrappers' Python costs more than the match.
        patterns = _re2.Set(_re2.RE2.Anchor.ANCHOR_BOTH, _options())
        self._desc_of: list[int] = []  # set index -> index into _DESCS
        self._lengths: list[tuple[int, ...]] = []
        for i, name in enumerate(_DESCS):
            desc = getattr(metadata, name)
            if desc is None or not desc.national_number_pattern:
                continue
            if patterns.Add(desc.national_number_pattern.encode("ascii")) != len(self._desc_of):
                raise re2.error(f"{name}: pattern does not compile")
            self._desc_of.append(i)
            self._lengths.append(tuple(desc.possible_length or ()))
        if not patterns.Compile():
            raise re2.error("the number-type patterns do not compile")
        self._match = patterns.Match
        leading = metadata.leading_digits
        self._leading = None if leading is None else Regex(leading.encode("ascii"), _options())._match

    def leads(self, nsn: bytes) -> bool | None:
        """Whether ``nsn`` starts with the region's leading digits; None when the metadata gives none."""
        if self._leading is None:
            return None
        return self._leading(_START, nsn, 0, len(nsn))[0][0] >= 0

    def matching(self, nsn: bytes) -> set[int]:
        """Indices into ``_DESCS`` of the descs that ``nsn`` matches."""
        n = len(nsn)
        return {self._desc_of[i] for i in self._match(nsn) if not self._lengths[i] or n in self._lengths[i]}

    def number_type(self, nsn: bytes) -> int:
        """``phonenumbers.phonenumberutil._number_type_helper`` for this region."""
        hits = self.matching(nsn)
        if _GENERAL not in hits:
            return PhoneNumberType.UNKNOWN
        for i, (_, kind) in enumerate(_ORDERED):
            if i in hits:
                return kind
        if _FIXED in hits:
            if self.same_mobile_and_fixed or _MOBILE in hits:
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not self.same_mobile_and_fixed and _MOBILE in hits:
            return PhoneNumberType.MOBILE
        return PhoneNumberType.UNKNOWN


def _regions() -> tuple[_Region, ...]:
    regions = []
    for code in COUNTRY_CODE_TO_REGION_CODE[44]:
        metadata = PhoneMetadata.metadata_for_region(code.upper(), None)
        if metadata is not None:
            regions.append(_Region(metadata))
    return tuple(regions)


_UK_REGIONS = _regions()


def uk_number_type(nsn: bytes) -> int:
    """``phonenumbers.number_type`` of the +44 number whose national significant number is ``nsn`` (ASCII
    digits, no leading zero): one of ``PhoneNumberType``'s values, which are ints."""
    for region in _UK_REGIONS:
        leads = region.leads(nsn)
        if leads is not None:
            if leads:
                return region.number_type(nsn)
        else:
            kind = region.number_type(nsn)
            if kind != PhoneNumberType.UNKNOWN:
                return kind
    return PhoneNumberType.UNKNOWN
