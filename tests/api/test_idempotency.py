"""Idempotency-Key: replays, conflicts, and concurrent requests of which only one takes effect."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from orders.models import Order
from paycore.apikeys import api_client_create
from paycore.idempotency import request_fingerprint
from paycore.models import ApiClient, IdempotencyRecord
from tests.factories import make_merchant, order_body
from tests.queries import executed


@pytest.mark.django_db
def test_the_same_key_and_body_replays_the_stored_response(api: APIClient) -> None:
    body = order_body(make_merchant())
    first = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    # Keys in another order: the same JSON document, so the same request.
    again = api.post("/api/v1/orders", dict(reversed(list(body.items()))), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_conflict(api: APIClient) -> None:
    merchant = make_merchant()
    api.post("/api/v1/orders", order_body(merchant), format="json", HTTP_IDEMPOTENCY_KEY="key-2")
    other = api.post(
        "/api/v1/orders", order_body(merchant, merchant_order_no="MO-2"), format="json", HTTP_IDEMPOTENCY_KEY="key-2"
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_an_order_post_writes_the_order_its_items_and_its_answer_in_one_statement(api: APIClient) -> None:
    """Database-only POSTs store the key with the answer and the work, atomically: on PostgreSQL
    one statement (no transaction to open and commit), never a row in progress."""
    items = [{"name": f"item {n}", "unit_price": 100 * n, "quantity": n} for n in (1, 2, 3)]
    body = order_body(make_merchant(), items=items)
    with CaptureQueriesContext(connection) as queries:
        created = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="once")
    assert created.status_code == 201
    tables = ('"orders_order"', '"orders_orderitem"', '"paycore_idempotencyrecord"')
    writes = [sql for sql in executed(queries) if any(t in sql for t in tables) and not sql.startswith("SELECT")]
    assert len(writes) == 1 and all(table in writes[0] for table in tables)
    record = IdempotencyRecord.objects.get(key="once")
    assert (record.state, record.response_status, record.response_body) == ("COMPLETED", 201, created.json())
    order = Order.objects.get(order_no=created.json()["order_no"])
    assert parse_datetime(created.json()["created_at"]) == order.created_at  # the answer shows what was stored
    assert [(i.name, i.unit_price, i.quantity) for i in order.items.order_by("pk")] == [
        ("item 1", 100, 1),
        ("item 2", 200, 2),
        ("item 3", 300, 3),
    ]


@pytest.mark.django_db
def test_a_validation_error_is_replayed_too(api: APIClient) -> None:
    bad = order_body(make_merchant(), currency="XXX")
    first = api.post("/api/v1/orders", bad, format="json", HTTP_IDEMPOTENCY_KEY="key-3")
    again = api.post("/api/v1/orders", bad, format="json", HTTP_IDEMPOTENCY_KEY="key-3")
    assert first.status_code == again.status_code == 400 and again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_keys_belong_to_one_client(api: APIClient) -> None:
    merchant = make_merchant()
    api.post("/api/v1/orders", order_body(merchant), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    _, key = api_client_create(name="second")
    second = APIClient()
    second.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = second.post("/api/v1/orders", order_body(merchant), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    assert IdempotencyRecord.objects.filter(key="shared").count() == 2


def _race(api_key: str, bodies: list[dict[str, Any]], idempotency_key: str | list[str]) -> list[Any]:
    """POST each body to /orders with its Idempotency-Key (one for all, or one each), all at once
    from their own threads (and database connections)."""
    barrier = threading.Barrier(len(bodies))
    keys = [idempotency_key] * len(bodies) if isinstance(idempotency_key, str) else idempotency_key

    def attempt(body: dict[str, Any], key: str) -> Any:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
        barrier.wait()
        try:
            return client.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(attempt, bodies, keys))


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_never_both_execute() -> None:
    merchant = make_merchant()
    _, key = api_client_create(name="racer")
    responses = _race(key, [order_body(merchant, merchant_order_no="MO-RACE")] * 8, "race-key")
    assert Order.objects.count() == 1
    assert all(r.status_code in (201, 409) for r in responses)
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"idempotency_in_progress"}
    executed = [r.status_code for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r]
    assert executed == [201]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_reusing_one_key_for_other_orders_leave_one_order() -> None:
    """Each request creates its own order before it finds the key taken: every one but the
    first to commit is rolled back, its order with it, and told the key is another request's."""
    merchant = make_merchant()
    _, key = api_client_create(name="reusers")
    bodies = [order_body(merchant, merchant_order_no=f"MO-REUSE-{n}") for n in range(6)]
    responses = _race(key, bodies, "reused-key")
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409, 409]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"idempotency_key_reused"}
    (order,) = Order.objects.all()
    record = IdempotencyRecord.objects.get(key="reused-key")
    assert record.response_body["order_no"] == order.order_no


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_for_one_merchant_order_number_create_one_order() -> None:
    """Each with its own key: the first statement to commit creates the order; the others' wait
    on its number, write nothing, and answer the same order, each key storing its own answer."""
    merchant = make_merchant()
    _, key = api_client_create(name="doublers")
    keys = [f"double-{n}" for n in range(6)]
    responses = _race(key, [order_body(merchant, merchant_order_no="MO-DOUBLE")] * 6, keys)
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 200, 201]
    (order,) = Order.objects.all()
    assert {r.json()["order_no"] for r in responses} == {order.order_no}
    assert order.items.count() == 2
    stored = IdempotencyRecord.objects.filter(key__in=keys)
    assert sorted(r.response_status for r in stored) == [200, 200, 200, 200, 200, 201]


@pytest.mark.django_db
def test_a_key_left_in_progress_by_a_crash_is_taken_over_once_stale(api: APIClient, settings: Any) -> None:
    body = order_body(make_merchant())
    client = ApiClient.objects.get(name="test-platform")
    IdempotencyRecord.objects.create(
        client=client,
        key="crashed",
        method="POST",
        path="/api/v1/orders",
        request_hash=request_fingerprint("POST", "/api/v1/orders", json.dumps(body).encode()),
    )
    busy = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="crashed")
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_in_progress"
    IdempotencyRecord.objects.filter(key="crashed").update(
        created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS + 1)
    )
    taken = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="crashed")
    assert taken.status_code == 201 and Order.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="crashed").state == "COMPLETED"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/payments", "/api/v1/refunds"])
def test_creating_without_an_idempotency_key_is_refused_before_anything_is_written(path: str) -> None:
    _, key = api_client_create(name="forgetful")
    client = APIClient()  # a plain client: no key is added for it
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post(path, order_body(make_merchant()), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert not Order.objects.exists() and not IdempotencyRecord.objects.exists()
