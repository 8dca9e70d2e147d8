"""Schemathesis against the real app: every operation of the generated OpenAPI document is called with requests
made from its own schemas (the workflows' form schemas for start and step bodies), with a read+write token, on a
store holding the demo's 120-odd cases of every process in every state. No answer may be a 500, and every answer must match the document (status,
content type, body schema)."""
from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from engine import tokens
from engine.cases import CASES
from tests.test_api import demo_app  # noqa: F401  (the fixture)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 4  # per operation: about 210 operations (one per workflow start and step), < 90 s in all
MORE = 12     # the paths of no one workflow (a case, its claim, contributions, objections, the inbox...)
PER_CASE = 3  # case numbers of the path's own workflow each operation is also tried on


def _strategy(operation: Any, ids: dict[str, list[int]]) -> Any:
    """Requests from the operation's schemas; on a case path, also on real cases of the path's workflow (a random
    number is almost never a case, which would test little but the 404)."""
    plain = operation.as_strategy()
    if "{case_id}" not in operation.path:
        return plain
    found = re.search(r"/workflows/(\w+)/", operation.path)
    chosen = ids.get(found.group(1), []) if found else ids["*"]
    picks = chosen[:: max(1, len(chosen) // PER_CASE)][:PER_CASE] if found else chosen
    return st.one_of(plain, *(operation.as_strategy(path_parameters={"case_id": n}) for n in picks))


def test_schemathesis_finds_no_server_error_and_no_schema_violation(demo_app: Any):
    app = demo_app
    store = app.extensions["civicflow"].store
    token, _doc = tokens.create(store, "staff", "schemathesis", "write", "2026-11-27T09:00:00+08:00")
    ids: dict[str, list[int]] = {"*": []}
    for doc in store.search(CASES):
        ids.setdefault(doc["workflow"], []).append(doc["id"])
    ids["*"] = [ids[w][0] for w in sorted(ids) if w != "*"][:8]  # one case of several processes
    assert len(ids) > 15

    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    calls = 0
    statuses: Counter[tuple[str, int]] = Counter()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 100  # the workflows' own paths are there

    for operation in operations:
        @settings(max_examples=MORE if "/workflows/" not in operation.path else EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=_strategy(operation, ids))
        def call(case: Any) -> None:
            nonlocal calls
            calls += 1
            try:
                response = case.call_and_validate(headers=headers, checks=CHECKS)
                statuses[(case.method, response.status_code)] += 1
            except Exception as exc:  # collect every operation's failure, report them together
                failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:600]}")
                raise

        before = len(failures)
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - a strategy that cannot be built is a failure too
            if len(failures) == before:
                failures.append(f"{operation.label}: not tested: {type(exc).__name__}: {str(exc)[:600]}")
    took = time.monotonic() - started
    print(f"schemathesis: {len(operations)} operations, {calls} calls, {len(failures)} failures, {took:.1f} s, "
          f"answers {sorted(statuses.items())}")
    assert not failures, "\n".join(failures[:20])
    assert calls >= len(operations)
    # it got past the token: reads answered, and writes reached the engine (moves, or refusals from its checks)
    assert statuses[("GET", 200)] > 20 and statuses[("POST", 401)] == 0 and statuses[("GET", 401)] == 0
    assert statuses[("POST", 422)] + statuses[("POST", 200)] + statuses[("POST", 201)] > 10
