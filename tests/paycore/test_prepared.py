"""paycore.prepared: a queryset compiled once answers like the queryset itself, every time."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from orders.models import Order, OrderItem
from paycore.prepared import PreparedQuery
from tests.factories import make_merchant, make_order
from tests.queries import executed

pytestmark = pytest.mark.django_db


def _items(*, order_no: str, min_quantity: int) -> QuerySet[OrderItem]:
    return (
        OrderItem.objects.filter(order__order_no=order_no, quantity__gte=min_quantity)
        .select_related("order__merchant")
        .only("name", "quantity", "order__order_no", "order__merchant__code")
        .annotate(doubled=F("quantity") * 2)
        .order_by("pk")
    )


items_of = PreparedQuery(_items)


def test_prepared_query_returns_what_the_queryset_returns_for_each_call() -> None:
    merchant = make_merchant(code="prep")
    first, second = make_order(merchant=merchant), make_order(merchant=merchant)
    for order in (first, second):
        expected = list(_items(order_no=order.order_no, min_quantity=1))
        got = items_of(order_no=order.order_no, min_quantity=1)
        assert [(i.pk, i.name, i.quantity, i.doubled) for i in got] == [  # type: ignore[attr-defined]
            (i.pk, i.name, i.quantity, i.doubled)  # type: ignore[attr-defined]
            for i in expected
        ]
        assert got[0].order.order_no == order.order_no
        assert got[0].order.merchant.code == "prep"
    assert items_of(order_no=first.order_no, min_quantity=2) == []
    assert items_of(order_no="no-such-order", min_quantity=1) == []


def test_prepared_query_loads_related_rows_in_its_one_statement_and_defers_the_rest() -> None:
    order = make_order()
    with CaptureQueriesContext(connection) as queries:
        (item,) = items_of(order_no=order.order_no, min_quantity=1)
        assert item.order.merchant.code == order.merchant.code
    assert len(executed(queries)) == 1
    assert item.get_deferred_fields() >= {"unit_price"}
    assert item.unit_price == order.items.get().unit_price  # a deferred column still loads on demand


def test_a_list_argument_is_compiled_per_length_and_answers_like_the_queryset() -> None:
    merchant = make_merchant()
    orders = [make_order(merchant=merchant) for _ in range(3)]

    def build(*, nos: list[str]) -> QuerySet[Order]:
        return Order.objects.filter(order_no__in=nos).order_by("pk")

    by_numbers = PreparedQuery(build)
    for wanted in ([orders[0]], [orders[2], orders[0]], orders, [orders[1]]):
        nos = [o.order_no for o in wanted]
        assert [o.pk for o in by_numbers(nos=nos)] == [o.pk for o in build(nos=nos)]
    assert by_numbers(nos=["missing", orders[1].order_no]) == [orders[1]]
    with pytest.raises(ValueError, match="a list of 1 to"):
        by_numbers(nos=[])


def test_prepared_query_values_are_parameters_never_sql() -> None:
    order = make_order()
    hostile = f"{order.order_no}' OR '1'='1"
    assert items_of(order_no=hostile, min_quantity=1) == []


@pytest.mark.django_db(transaction=True)  # outside any transaction, as a view without atomic is
def test_prepared_row_locks_need_a_transaction_like_the_queryset() -> None:
    order = make_order()

    @PreparedQuery
    def locked(*, pk: int) -> QuerySet[Order]:
        return Order.objects.select_for_update(of=("self",), no_key=True).filter(pk=pk)

    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            assert [o.pk for o in locked(pk=order.pk)] == [order.pk]
        assert "FOR NO KEY UPDATE" in executed(queries)[0] or connection.vendor != "postgresql"
    with pytest.raises(TransactionManagementError):
        locked(pk=order.pk)


def test_arguments_that_cannot_be_compiled_once_are_refused_at_the_first_call() -> None:
    with pytest.raises(TypeError, match="annotated int, str or a list"):
        PreparedQuery(lambda *, no: Order.objects.filter(order_no=no))

    @PreparedQuery
    def rewritten(*, fragment: str) -> QuerySet[Order]:
        return Order.objects.filter(description__contains=fragment)  # the value becomes %fragment%

    with pytest.raises(TypeError, match="do not reach the SQL"):
        rewritten(fragment="Coff")

    @PreparedQuery
    def prefetching(*, pk: int) -> QuerySet[Order]:
        return Order.objects.filter(pk=pk).prefetch_related("items")

    with pytest.raises(TypeError, match="plain model querysets"):
        prefetching(pk=1)
