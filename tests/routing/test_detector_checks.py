"""Check-digit arithmetic done here rather than by python-stdnum gives stdnum's answer."""

from __future__ import annotations

import random

from stdnum.gb import nhs

from routing.detectors import _NHS_WEIGHTS


def test_nhs_checksum_matches_stdnum() -> None:
    rng = random.Random(18)
    numbers = [b"".join(rng.choice(b"0123456789").to_bytes(1, "big") for _ in range(10)) for _ in range(20_000)]
    numbers += [b"9434765919", b"9434765918", b"0000000000", b"4010232137"]
    for number in numbers:
        assert (sum(map(int.__mul__, number, _NHS_WEIGHTS)) % 11 == 0) == (nhs.checksum(number.decode()) == 0)
