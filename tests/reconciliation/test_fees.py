"""The fee a matched payment is expected to carry: the account's published rate, rounded as it
says, computed by the database in whole fen exactly as decimal arithmetic rounds it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import pytest
from django.db import connection

from channels.models import ChannelAccount
from reconciliation.services.match import MatchScope, _fee_terms
from reconciliation.services.run import _fee_rule

pytestmark = pytest.mark.django_db

SCOPE = MatchScope(
    account_id=1,
    bill_id=1,
    bill_date=datetime(2025, 3, 3, tzinfo=UTC).date(),
    run_id=1,
    window_start=datetime(2025, 3, 2, 16, tzinfo=UTC),
    window_end=datetime(2025, 3, 3, 16, tzinfo=UTC),
    expected_from=datetime(2025, 3, 2, 16, tzinfo=UTC),
    hold=timedelta(minutes=30),
    now=datetime(2025, 3, 4, tzinfo=UTC),
)
AMOUNTS = [1, 83, 84, 249, 250, 251, 1500, 99_999, 10**12]


def _expected_in_sql(rate: str, rounding: str) -> list[int]:
    *_, expected = _fee_terms(replace(SCOPE, fee_rate=Decimal(rate), fee_rounding=rounding))
    values = ", ".join(f"({amount})" for amount in AMOUNTS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expected} FROM (VALUES {values}) v(p_amount)")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize("rate", ["0.006", "0.029", "0.0038", "0.000001", "0.999999"])
@pytest.mark.parametrize(("rounding", "mode"), [("half_up", ROUND_HALF_UP), ("down", ROUND_DOWN)])
def test_the_expected_fee_is_the_rate_rounded_as_published(rate: str, rounding: str, mode: str) -> None:
    exact = [int((amount * Decimal(rate)).quantize(Decimal(1), rounding=mode)) for amount in AMOUNTS]
    assert _expected_in_sql(rate, rounding) == exact


def test_a_rate_of_more_than_six_decimals_is_not_checked_and_says_why() -> None:
    rate, _, words = _fee_rule(ChannelAccount(channel="wechat", options={"fee_rate": "0.0060001"}))
    assert rate is None and "unusable fee_rate '0.0060001'" in words
    rate, _, _ = _fee_rule(ChannelAccount(channel="wechat", options={"fee_rate": "0.006000"}))
    assert rate == Decimal("0.006")
