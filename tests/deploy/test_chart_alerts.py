"""The chart's alert rules (PrometheusRule): every listed condition has a rule, thresholds come from values, and
every metric a rule reads is one the router exports."""

from __future__ import annotations

import re

from chart_support import Rendered

from serving.metrics import Metrics

EXPECTED = {
    "SovereignAuditWriteFailures",
    "SovereignAuditShippingBacklog",
    "SovereignAuditShippingFailing",
    "SovereignAuditAnchorStale",
    "SovereignClassificationFailures",
    "SovereignCommercialEgressHigh",
    "SovereignHighErrorRatio",
    "SovereignNoClearedBackend",
    "SovereignLocalEngineSkipped",
}


def _exported_names() -> set[str]:
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
        if family.type == "counter":  # a labelled counter has no sample until a label is used
            names.add(f"{family.name}_total")
    return names


def test_alert_rules_cover_the_conditions_and_read_real_metrics(rendered: Rendered) -> None:
    rules = rendered.of_kind("PrometheusRule")
    if not (rendered.values.get("alerts") or {}).get("enabled"):
        assert rules == []
        return
    (rule,) = rules
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == EXPECTED
    exported = _exported_names()
    for name, alert in alerts.items():
        for metric in re.findall(r"\b(sovereign_[a-z_]+)", alert["expr"]):
            assert metric in exported, (name, metric)
        assert "{{" not in alert["expr"], name
    egress = rendered.values["alerts"].get("commercialEgressPerMinute", 60)
    assert alerts["SovereignCommercialEgressHigh"]["expr"].endswith(f"> {egress}")
    # the annotations keep Prometheus's own templates (escaped from Helm)
    assert "{{ $labels.reason }}" in alerts["SovereignClassificationFailures"]["annotations"]["summary"]
