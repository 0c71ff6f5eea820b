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


@pytest.mark.parametrize(("field", "value"), [
    ("stream", "yes"), ("stream", 1), ("stream", "true"), ("echo", 0), ("ignore_eos", "1"),
    ("max_tokens", True), ("max_tokens", "5"), ("max_tokens", 5.5), ("n", [1]), ("seed", "3"),
    ("temperature", "0.5"), ("temperature", True), ("top_p", {"p": 1}), ("presence_penalty", "0"),
    ("model", 7), ("user", ["me"]), ("encoding_format", 1),
])
def test_well_known_fields_must_have_their_json_type(field: str, value: object) -> None:
    """vLLM's models would coerce each of these ("stream": "yes" streamed); the OpenAI API refuses them."""
    with pytest.raises(BadRequest) as info:
        strict.check_json_types({"model": "m", field: value})
    assert info.value.param == field
    assert field in info.value.message and repr(value) not in info.value.message


def test_right_json_types_and_null_pass() -> None:
    strict.check_json_types({"model": "m", "stream": True, "echo": False, "max_tokens": 5, "n": 1.0, "seed": -3,
                             "temperature": 0, "top_p": 0.9, "presence_penalty": -1.5, "user": "u",
                             "max_completion_tokens": None, "logprobs": True, "top_logprobs": 2,
                             "unlisted": "anything"})
    strict.check_json_types({"model": "m", "logprobs": 3})  # completions' logprobs is an integer: not checked
