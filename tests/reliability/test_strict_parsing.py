"""The strict parsing rules (``serving/strict.py``) on their own: no server needed."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from serving import strict
from serving.errors import BadRequest


@pytest.mark.parametrize("raw", [b'{"t": NaN}', b'{"t": Infinity}', b'{"t": -Infinity}', b'{"t": 1e999}',
                                 b'{"t": [1, -1e400]}'])
def test_non_finite_numbers_are_not_json(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict.loads(raw)


def test_finite_numbers_parse_as_usual() -> None:
    assert strict.loads(b'{"t": 0.7, "n": 3, "big": 1.5e308, "neg": -2.5e-300}') == {
        "t": 0.7, "n": 3, "big": 1.5e308, "neg": -2.5e-300}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str


def test_unknown_fields_are_named_when_they_look_like_names() -> None:
    with pytest.raises(BadRequest) as info:
        strict.reject_unknown_fields(_Open(model="m", frobnicate=1))
    assert info.value.param == "frobnicate" and "frobnicate" in info.value.message


def test_unknown_field_with_free_text_name_is_not_echoed() -> None:
    with pytest.raises(BadRequest) as info:
        strict.reject_unknown_fields(_Open.model_validate({"model": "m", "Patient Jo Bloggs, NHS 943": 1}))
    assert "Bloggs" not in info.value.message and info.value.param is None


def test_known_fields_pass() -> None:
    strict.reject_unknown_fields(_Open(model="m"))
