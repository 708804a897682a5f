"""paycore.statements: hot SQL is prepared once per server connection, then only executed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from paycore import statements
from tests.factories import make_order

pytestmark = pytest.mark.django_db

ORDER_BY_NUMBER = 'SELECT "id", "amount" FROM "orders_order" WHERE "order_no" = %s AND "amount" > %s'


def _run(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        statements.execute(cursor, sql, params)
        return cursor.fetchall()


def _sent(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"].split()[0] for q in queries.captured_queries]


@pytest.mark.django_db(transaction=True)  # reconnects
def test_a_statement_is_prepared_once_per_connection_then_executed_with_its_values() -> None:
    first, second = make_order(), make_order()
    connection.close()  # a new server connection: nothing is prepared on it yet
    with CaptureQueriesContext(connection) as queries:
        assert _run(ORDER_BY_NUMBER, [first.order_no, 0]) == [(first.pk, first.amount)]
        assert _run(ORDER_BY_NUMBER, [second.order_no, 0]) == [(second.pk, second.amount)]
        assert _run(ORDER_BY_NUMBER, [second.order_no, second.amount]) == []
    assert _sent(queries) == ["PREPARE", "EXECUTE", "EXECUTE", "EXECUTE"]
    assert statements.source(queries.captured_queries[1]["sql"]) == ORDER_BY_NUMBER
    connection.close()
    with CaptureQueriesContext(connection) as queries:
        assert _run(ORDER_BY_NUMBER, [first.order_no, 0]) == [(first.pk, first.amount)]
    assert _sent(queries) == ["PREPARE", "EXECUTE"]


def test_values_stay_values_and_percent_signs_stay_literal() -> None:
    order = make_order()
    hostile = f"{order.order_no}' OR '1'='1"
    assert _run(ORDER_BY_NUMBER, [hostile, 0]) == []
    assert _run("SELECT %s::text || '%%'", ["50"]) == [("50%",)]


@pytest.mark.django_db(transaction=True)  # reconnects, and rolls a transaction back
def test_a_statement_prepared_in_a_rolled_back_transaction_is_still_there() -> None:
    order = make_order()
    connection.close()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert _run(ORDER_BY_NUMBER, [order.order_no, 0]) == [(order.pk, order.amount)]
        raise RuntimeError("roll back")
    with CaptureQueriesContext(connection) as queries:
        assert _run(ORDER_BY_NUMBER, [order.order_no, 0]) == [(order.pk, order.amount)]
    assert _sent(queries) == ["EXECUTE"]


def test_statements_go_as_text_behind_a_transaction_pooler(settings: Any) -> None:
    order = make_order()
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        with CaptureQueriesContext(connection) as queries:
            assert _run(ORDER_BY_NUMBER, [order.order_no, 0]) == [(order.pk, order.amount)]
    finally:
        connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = False
    assert _sent(queries) == ["SELECT"]


def test_a_statement_given_the_wrong_number_of_values_is_refused() -> None:
    with pytest.raises(ValueError, match="takes 2 values, not 3"):
        _run(ORDER_BY_NUMBER, ["x", 0, 1])
    with pytest.raises(ValueError, match="takes 2 values, not 1"):
        _run(ORDER_BY_NUMBER, ["x"])


@pytest.mark.django_db(transaction=True)  # reconnects
def test_past_the_cap_new_statements_go_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    order = make_order()
    connection.close()
    monkeypatch.setattr(statements, "MAX_PER_CONNECTION", 1)
    with CaptureQueriesContext(connection) as queries:
        assert _run(ORDER_BY_NUMBER, [order.order_no, 0]) == [(order.pk, order.amount)]
        assert _run('SELECT "id" FROM "orders_order" WHERE "id" = %s', [order.pk]) == [(order.pk,)]
        assert _run(ORDER_BY_NUMBER, [order.order_no, 0]) == [(order.pk, order.amount)]
    assert _sent(queries) == ["PREPARE", "EXECUTE", "SELECT", "EXECUTE"]
