"""A bill parsed row by row in Python (every channel but WeChat) is COPYed as it is read: a value
the database refuses makes the bill unreadable, with nothing kept, as a staged bill's does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from channels.base import Bill, BillRow, BillRowKind, BillSummary, ChannelUnavailable
from channels.models import ChannelAccount
from reconciliation.models import BillLine, ChannelBill
from reconciliation.services import bill_for, bill_load

pytestmark = pytest.mark.django_db(transaction=True)

DAY = date(2025, 3, 3)


def _bill(currencies: list[str]) -> Bill:
    def rows(bill: Bill) -> Iterator[BillRow]:
        for i, currency in enumerate(currencies, 1):
            yield BillRow(
                kind=BillRowKind.PAYMENT,
                payment_no=f"P{i}",
                channel_trade_no=f"T{i}",
                amount=1000,
                currency=currency,
                occurred_at=datetime(2025, 3, 3, 2, tzinfo=UTC),
            )
        bill.summary = BillSummary(line_count=len(currencies))

    return Bill(channel="points", bill_date=DAY, bill_type="statement", rows=rows)


def _load(bill: Bill) -> ChannelBill:
    account, _ = ChannelAccount.objects.get_or_create(
        name="python-parsed", defaults={"channel": "points", "base_url": "https://points.invalid", "ids": {}}
    )
    return bill_load(bill_id=bill_for(account=account, bill_date=DAY).pk, bill=bill)


def test_a_python_parsed_bill_loads_its_rows() -> None:
    assert _load(_bill(["CNY", "CNY"])).line_count == 2


def test_a_value_the_database_refuses_makes_the_bill_unreadable_and_keeps_nothing() -> None:
    with pytest.raises(ChannelUnavailable) as raised:
        _load(_bill(["CNY", "YUAN"]))  # the lines' currency column holds three letters
    assert raised.value.code == "BILL_UNREADABLE" and "unreadable bill" in raised.value.message
    assert not BillLine.objects.exists()
    assert ChannelBill.objects.get().status == ChannelBill.Status.PENDING
