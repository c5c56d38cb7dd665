"""The API keeps its OpenAPI document: schemathesis sends generated requests (valid and invalid)
to every operation, as a fresh normal user of the in-process platform (tests/inproc.py), and
finds no server error and no answer the document does not describe (status, content type, body
schema, headers).

Not sent: operations that start things (notebook servers, compute clusters), that dial the
address in the request (a connection's endpoint is tried first) or that add accounts to the
shared platform (sign-up), nor the compute operations: the in-process platform runs no
dask-gateway (they are driven on real hubs in test_dask.py and test_spark.py). The user is no
administrator, so every administrators' operation is a documented 403 and nothing another test
relies on can be changed."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from inproc import InProc

schemathesis = pytest.importorskip("schemathesis")
checks = schemathesis.checks
# Loaded now, while collecting: schemathesis is a pytest plugin, so pytest parses its modules to
# rewrite them, and Python 3.11.7's parser fails ("AST constructor recursion depth mismatch")
# when another thread parses at the same moment, as the in-process platform's threads may.
pytest.importorskip("schemathesis.specs.openapi.schemas")

PREFIX = "/services/lakehub/api"
SKIPPED = [
    ("POST", "/signup"),
    ("POST", "/servers"),
    ("POST", "/compute/{kind}"),
    ("POST", "/connections"),
]
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.allow_header_conformance,
]


@pytest.fixture(scope="module")
def fuzz_user(inproc: InProc) -> str:
    name = f"fuzz{secrets.token_hex(3)}"
    inproc.quick_user(name)
    return name


def test_answers_match_the_document(inproc: InProc, fuzz_user: str, metrics_store: InProc) -> None:
    schema = schemathesis.openapi.from_url(f"{inproc.url}/services/lakehub/openapi.json")
    schema.config.update(base_url=inproc.url)
    for method, path in SKIPPED:
        schema = schema.exclude(method=method, path=PREFIX + path)
    schema = schema.exclude(path_regex=f"^{PREFIX}/compute")
    headers = {"Authorization": f"token {inproc.token(fuzz_user)}"}
    failures, operations, start = [], 0, time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=3,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        try:
            fuzz()
        except Exception as err:  # every operation is tried; the failures are listed at the end
            failures.append(f"{operation.label}: {err}"[:2000])
    assert operations > 50
    assert time.monotonic() - start < 100, "the fuzzing went over its time"
    assert not failures, "\n\n".join(failures)
