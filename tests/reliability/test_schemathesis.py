"""Generated requests against the served OpenAPI schema of ``/v1/*``: no 5xx, every error in the OpenAI envelope.

For each operation, 40 valid-by-schema and 40 schema-violating examples: a few hundred requests in all.
Schemathesis' own pytest plugin does not work with this pytest (9.x), so its strategies are driven by
hypothesis directly; the checks are schemathesis' ``not_a_server_error`` and our envelope check.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.support.app import RunningApp

pytestmark = pytest.mark.engine

EXAMPLES = 40


def _check(response: schemathesis.Response, seen: Counter[int]) -> None:
    seen[response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert "Traceback" not in response.text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_generated_requests(app: RunningApp, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{app.root}/openapi.json", headers=app.headers())  # behind auth
    results = list(schema.get_all_operations())
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == len(results), "the schema has operations schemathesis cannot read"
    operations = [
        op for op in operations if op.path.startswith("/v1/") and (mode is GenerationMode.POSITIVE or op.body)
    ]  # without a body (GET, DELETE, a response's cancel: a free-form id in the path) nothing is left to break
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}
    seen: Counter[int] = Counter()

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            if isinstance(case.body, dict) and isinstance(max_tokens := case.body.get("max_tokens"), int):
                case.body["max_tokens"] = min(max_tokens, 16)  # keep the engine's work small
            _check(case.call(headers=app.headers("tester"), timeout=180), seen)

        run()
    print(f"\nschemathesis {mode.value}: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= EXAMPLES
