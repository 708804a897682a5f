"""A bounded schemathesis run over every operation of the published schema, with data that fits
it and data that does not: no input gives a server error, and every answer (status code, media
type, body) is one the schema documents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from paycore.apikeys import api_client_create

schema = schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", application)
# The test sends a real key itself, so the generator leaves the Authorization header alone.
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=30, with_security_parameters=False
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def bearer(db: None) -> Iterator[dict[str, str]]:
    """A key with every scope. The calls go straight into the WSGI application, so, as Django's own
    test client does, the connection is kept open across requests (it holds the test's transaction)."""
    _, key = api_client_create(name="fuzzer")
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield {"Authorization": f"Bearer {key}"}
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None, derandomize=True)
def test_the_api_answers_every_input_as_its_schema_says(case: Any, bearer: dict[str, str]) -> None:
    # call_and_validate raises on any failed check; the status is asserted too, so the test says it.
    response = case.call_and_validate(headers=bearer, checks=CHECKS)
    assert response.status_code < 500, (case.method, case.path, response.status_code)
