"""`sovereign transparency`: the ATRS record of the development configuration, valid against its schema, with the
fields only a person can fill clearly marked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from serving.config import load_settings
from serving.defaults import default_config
from serving.transparency import PERSON, Entry, build_record, main, render_markdown, schema


def check_record(data: dict) -> None:
    """Valid against the record's JSON Schema; every field either has a value and a source, or is for a person."""
    jsonschema.validate(data, schema())
    for name, section in data.items():
        if not isinstance(section, dict):
            continue
        for entry in section["fields"].values():
            if entry["source"] == PERSON:
                assert entry["value"] is None and entry["guidance"], (name, entry["label"])
            else:
                assert entry["value"] not in (None, "", [], {}), (name, entry["label"])


def test_development_config_record_is_valid_and_marks_what_a_person_fills() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", "transparency", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    check_record(data)
    spec = data["tool_specification"]["fields"]
    assert {m["backend"] for m in spec["models"]["value"]} == {"local", "local-embed"}
    assert "sovereign" in spec["models"]["value"][0]["hosting"]
    assert spec["commercial_processors"]["value"] == "none"
    assert spec["classifier"]["value"]["detects"]["nhs_number"] == "OFFICIAL-SENSITIVE"
    assert spec["classifier"]["value"]["detects"]["marking_top_secret"] == "TOP SECRET"
    assert spec["classifier_error_rates"]["source"] == "measured"
    assert data["tier_1"]["fields"]["contact"]["source"] == PERSON


def test_markdown_marks_person_fields_and_names_every_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = default_config()
    config["backends"].append(
        {
            "name": "openai",
            "kind": "openai",
            "sovereign": False,
            "model": "gpt-4o-mini",
            "base_url": "https://commercial-llm.example.invalid/v1",
            "max_classification": "OFFICIAL",
            "accept_unscanned": ["image"],
        }
    )
    config["models"][0]["route"].append("openai")
    config["audit"] = {
        **config["audit"],
        "shipping": {"kind": "syslog", "endpoint": "siem.example:6514", "tls": True},
        "anchors": {"sink": "file", "path": "/mnt/other/anchors.jsonl", "interval_s": 60},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path)]) == 0
    text = capsys.readouterr().out
    record = build_record(load_settings(path), source=str(path))
    assert text.strip() == render_markdown(record).strip()
    assert text.count("**: **[TO BE COMPLETED BY A PERSON]**") == len(record.person_fields()) > 10
    for section in record.sections():
        assert f"## {section.title}" in text
    assert "host: commercial-llm.example.invalid" in text and "never above OFFICIAL" in text and "image" in text
    assert "siem.example:6514" in text and "--anchors SOURCE" in text
    review = record.tool_specification.fields["egress_review"]  # on: a non-sovereign backend is configured
    assert review.source == "measured" and "semantic second opinion" in review.label
    assert review.value["held_out"]["recall_sensitive"]["rate"] > 0.9 and "child" in review.value["categories"]
    check_record(json.loads(record.model_dump_json()))


def test_schema_refuses_a_person_field_with_a_machine_value() -> None:
    with pytest.raises(ValueError, match="has no value"):
        Entry(label="Contact", source=PERSON, value="someone@example.gov.uk", guidance="x")
    with pytest.raises(ValueError, match="must have a value"):
        Entry(label="Models", source="configuration", value=None)


def test_schema_option_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "TransparencyRecord"
