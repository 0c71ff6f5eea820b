"""The strict parsing rules (``serving/strict.py``) on their own: no server needed."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from serving import strict
from serving.errors import BadRequest


@pytest.mark.parametrize(
    "raw", [b'{"t": NaN}', b'{"t": Infinity}', b'{"t": -Infinity}', b'{"t": 1e999}', b'{"t": [1, -1e400]}']
)
def test_non_finite_numbers_are_not_json(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict.loads(raw)


def test_finite_numbers_parse_as_usual() -> None:
    assert strict.loads(b'{"t": 0.7, "n": 3, "big": 1.5e308, "neg": -2.5e-300}') == {
        "t": 0.7,
        "n": 3,
        "big": 1.5e308,
        "neg": -2.5e-300,
    }


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str


def test_unknown_fields_are_counted_never_named() -> None:
    """An unknown field's name is caller text (it can hold a name and an NHS number): never in message or param."""
    for key in ("frobnicate", "Patient Jo Bloggs, NHS 943", "9434765919"):
        with pytest.raises(BadRequest) as info:
            strict.reject_unknown_fields(_Open.model_validate({"model": "m", key: 1}))
        assert key not in info.value.message and info.value.param is None
        assert info.value.message == "invalid request: 1 unrecognized request argument"
        assert info.value.code == "unknown_parameter"


def test_unknown_field_close_to_a_known_one_suggests_the_known_name() -> None:
    class _Sampling(_Open):
        temperature: float = 1.0

    with pytest.raises(BadRequest) as info:
        strict.reject_unknown_fields(_Sampling.model_validate({"model": "m", "temprature": 0.5, "other": 1}))
    assert info.value.message == "invalid request: 2 unrecognized request arguments (did you mean temperature?)"
    assert "temprature" not in info.value.message


def test_known_fields_pass() -> None:
    strict.reject_unknown_fields(_Open(model="m"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "yes"),
        ("stream", 1),
        ("stream", "true"),
        ("echo", 0),
        ("ignore_eos", "1"),
        ("max_tokens", True),
        ("max_tokens", "5"),
        ("max_tokens", 5.5),
        ("n", [1]),
        ("seed", "3"),
        ("temperature", "0.5"),
        ("temperature", True),
        ("top_p", {"p": 1}),
        ("presence_penalty", "0"),
        ("model", 7),
        ("user", ["me"]),
        ("encoding_format", 1),
    ],
)
def test_well_known_fields_must_have_their_json_type(field: str, value: object) -> None:
    """vLLM's models would coerce each of these ("stream": "yes" streamed); the OpenAI API refuses them."""
    with pytest.raises(BadRequest) as info:
        strict.check_json_types({"model": "m", field: value})
    assert info.value.param == field
    assert field in info.value.message and repr(value) not in info.value.message


def test_right_json_types_and_null_pass() -> None:
    strict.check_json_types(
        {
            "model": "m",
            "stream": True,
            "echo": False,
            "max_tokens": 5,
            "n": 1.0,
            "seed": -3,
            "temperature": 0,
            "top_p": 0.9,
            "presence_penalty": -1.5,
            "user": "u",
            "max_completion_tokens": None,
            "logprobs": True,
            "top_logprobs": 2,
            "unlisted": "anything",
        }
    )
    strict.check_json_types({"model": "m", "logprobs": 3})  # completions' logprobs is an integer: not checked


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_bodies_are_refused(encoding: str) -> None:
    """json.loads would guess these encodings from the first bytes (and a surrogate escape would then pass)."""
    raw = '{"model": "m", "prompt": "a \\ud800 b"}'.encode(encoding)
    with pytest.raises(strict.NotUTF8):
        strict.loads(raw)


def test_utf8_with_or_without_bom_is_read_and_invalid_utf8_is_refused() -> None:
    assert strict.loads('{"p": "caf\u00e9"}'.encode()) == {"p": "caf\u00e9"}
    assert strict.loads(b"\xef\xbb\xbf" + b'{"p": 1}') == {"p": 1}
    with pytest.raises(strict.NotUTF8):
        strict.loads(b'{"p": "\xff\xfe("}')
    with pytest.raises(ValueError):
        strict.loads(b'{"p": "a \\ud800 b"}')  # still: a lone surrogate escape in UTF-8 is refused


def test_a_validator_that_fails_in_its_own_way_is_a_400() -> None:
    """vLLM's validator raised KeyError for a named tool_choice whose tool had no name: a 400, never a 500."""
    from pydantic import TypeAdapter, model_validator

    class _Fragile(_Open):
        @model_validator(mode="after")
        def _lookup(self) -> _Fragile:
            raise KeyError("name")

    with pytest.raises(BadRequest) as info:
        strict.validate(TypeAdapter(_Fragile), {"model": "m"})
    assert info.value.status == 400
