"""Migration 0005 folds the one-row-a-payment stamps into blocks of 64 and back, keeping each
payment's run and time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from reconciliation.selectors import payment_reconciled_at

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("reconciliation", "0004_billline_bill_line_no_key")
AFTER = ("reconciliation", "0005_reconciled_payment_blocks")
FIRST, LATER = datetime(2025, 3, 3, 2, tzinfo=UTC), datetime(2025, 3, 4, 2, tzinfo=UTC)
STAMPS = [(64_063, None, FIRST), (64_064, 7, LATER), (64_000, None, FIRST), (64_001, 8, FIRST)]


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


@pytest.fixture
def before_the_blocks() -> Iterator[None]:
    _migrate(BEFORE)
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_per_payment_stamps_fold_into_blocks_and_unfold_again(before_the_blocks: None) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO reconciliation_reconciledpayment (payment_id, run_id, reconciled_at) VALUES (%s, %s, %s)",
            STAMPS,
        )
    _migrate(AFTER)
    assert {p: payment_reconciled_at(p) for p, _, _ in STAMPS} == {p: at for p, _, at in STAMPS}
    assert payment_reconciled_at(64_002) is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT block, run_id FROM reconciliation_reconciledpaymentblock ORDER BY block, run_id")
        assert cursor.fetchall() == [(1000, 8), (1000, None), (1001, 7)]
    _migrate(BEFORE)
    with connection.cursor() as cursor:
        cursor.execute("SELECT payment_id, run_id, reconciled_at FROM reconciliation_reconciledpayment")
        assert sorted(cursor.fetchall()) == sorted(STAMPS)
