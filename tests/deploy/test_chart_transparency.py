"""The transparency record for each example values file (from the configuration the chart renders), and the
chart publishing it as a ConfigMap."""

from __future__ import annotations

import json

import pytest
import yaml
from chart_support import Rendered, render, values_of

from serving.config import load_settings
from serving.transparency import build_record, render_markdown
from tests.serving.test_transparency import check_record


def _config(rendered: Rendered) -> dict:
    (cm,) = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-config")]
    return yaml.safe_load(cm["data"]["config.yaml"])


def test_record_for_each_example_is_valid(rendered: Rendered) -> None:
    settings = load_settings(data=_config(rendered))
    record = build_record(settings, source=rendered.name)
    check_record(json.loads(record.model_dump_json()))
    processors = record.tool_specification.fields["commercial_processors"].value
    commercial = [b.name for b in settings.backends if not b.sovereign]
    if commercial:
        assert [p["backend"] for p in processors] == commercial
        assert all("never above OFFICIAL" in p["may_receive"] for p in processors)
    else:
        assert processors == "none"
    assert rendered.of_kind("ConfigMap") and not [
        c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-transparency")
    ]


def test_chart_publishes_the_record(generate) -> None:
    values = values_of("values-h200-8b.yaml")
    base = render(generate, "values-h200-8b.yaml", values)
    markdown = render_markdown(build_record(load_settings(data=_config(base)), source="values-h200-8b.yaml"))
    published = render(generate, "published", {**values, "transparency": {"enabled": True, "record": markdown}})
    (cm,) = [c for c in published.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-transparency")]
    assert cm["data"]["transparency.md"].strip() == markdown.strip()
    with pytest.raises(Exception, match=r"transparency\.record"):
        render(generate, "empty", {**values, "transparency": {"enabled": True}})
