"""paycore.writes: statements built once per model write what the ORM would have written."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.utils import timezone

from inbox.models import InboundNotification
from orders.models import OrderItem
from paycore.apikeys import api_client_create
from paycore.models import IdempotencyRecord
from paycore.writes import insert_all, insert_plan, insert_unless_exists, save_fields, update_columns
from payments.models import Payment, PaymentEvent, PaymentOrderMap
from tests.factories import make_order

pytestmark = pytest.mark.django_db


def test_insert_all_writes_every_row_in_order_with_its_primary_key() -> None:
    order = make_order()
    items = [OrderItem(order=order, name=f"Item {n}", unit_price=100 * n, quantity=n) for n in (1, 2, 3)]
    assert insert_all(items) == items
    stored = {i.pk: (i.name, i.unit_price, i.quantity) for i in OrderItem.objects.filter(order=order)}
    assert [stored[i.pk] for i in items] == [("Item 1", 100, 1), ("Item 2", 200, 2), ("Item 3", 300, 3)]
    assert all(not i._state.adding for i in items)
    assert insert_all([]) == []


def test_insert_unless_exists_inserts_once_per_unique_key() -> None:
    client, _ = api_client_create(name="writes")
    first = IdempotencyRecord(client=client, key="k1", method="POST", path="/p", request_hash="h")
    again = IdempotencyRecord(client=client, key="k1", method="POST", path="/p", request_hash="other")
    assert insert_unless_exists(first, conflict_fields=("client", "key")) is True
    assert insert_unless_exists(again, conflict_fields=("client", "key")) is False
    assert again.pk is None
    assert IdempotencyRecord.objects.get(client=client, key="k1").request_hash == "h"


def test_update_columns_prepares_values_like_the_orm() -> None:
    client, _ = api_client_create(name="writes")
    record = IdempotencyRecord.objects.create(client=client, key="k2", method="POST", path="/p", request_hash="h")
    done = timezone.now()
    body = {"order_no": "PC1", "items": [{"name": "Latte", "unit_price": 1500}], "note": None}
    changed = update_columns(
        IdempotencyRecord,
        record.pk,
        state=IdempotencyRecord.State.COMPLETED,
        response_status=201,
        response_body=body,
        completed_at=done,
    )
    assert changed == 1
    record.refresh_from_db()
    assert (record.state, record.response_status, record.response_body, record.completed_at) == (
        IdempotencyRecord.State.COMPLETED,
        201,
        body,
        done,
    )
    assert update_columns(IdempotencyRecord, record.pk, response_body=None) == 1
    assert IdempotencyRecord.objects.filter(pk=record.pk, response_body__isnull=True).exists()  # SQL NULL
    assert update_columns(IdempotencyRecord, -1, response_status=200) == 0


def test_save_fields_writes_only_the_named_columns_and_stamps_auto_now() -> None:
    order = make_order()
    before = order.updated_at
    order.description = "Tea"
    order.customer_ref = "not saved"
    save_fields(order, "description", "updated_at")
    assert order.updated_at > before  # stamped on the instance, as save() does
    stored = type(order).objects.get(pk=order.pk)
    assert (stored.description, stored.customer_ref, stored.updated_at) == ("Tea", "cust-1", order.updated_at)


def test_save_fields_of_a_row_that_is_gone_is_an_error() -> None:
    order = make_order()
    order.pk = -1
    with pytest.raises(DatabaseError):
        save_fields(order, "description")


def test_insert_values_are_prepared_as_the_orm_prepares_them() -> None:
    """The shortcut for plain values must agree with ``get_db_prep_save`` for every column that
    orders, payments and the inbox insert, including the ones it does not shortcut (encrypted
    text, JSON, a naive datetime)."""
    samples = [None, "text", "", 0, 15, True, timezone.now(), {"k": [1, "v"]}]
    for model in (IdempotencyRecord, OrderItem, Payment, PaymentEvent, PaymentOrderMap, InboundNotification):
        for field, prepare in insert_plan(model):
            for value in samples:
                try:
                    expected = field.get_db_prep_save(value, connection)
                    sql = _literal(expected)
                except (TypeError, ValueError, AttributeError, ValidationError):
                    continue  # a value this column cannot take
                got = prepare(value)
                if "Encrypted" in type(field).__name__:  # a fresh nonce each time
                    assert type(got) is type(expected), field
                else:  # adapters (Inet, Json) compare by identity: compare the SQL they become
                    assert _literal(got) == sql and type(got) is type(expected), (field, value)
    paid_at = dict((f.name, prepare) for f, prepare in insert_plan(Payment))["paid_at"]
    naive = timezone.now().replace(tzinfo=None)
    with pytest.warns(RuntimeWarning):  # the ORM's naive-datetime warning is kept
        assert paid_at(naive) == naive.replace(tzinfo=datetime.UTC)


def _literal(value: object) -> bytes:
    with connection.cursor() as cursor:
        return cursor.cursor.mogrify("%s", [value])
