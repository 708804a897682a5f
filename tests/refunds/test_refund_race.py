"""Refunds under concurrency on PostgreSQL: the payment lock keeps the sum within the payment,
and one refund_no never refunds twice."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

import pytest
from django.db import connection

from channels.models import ChannelAccount
from paycore.errors import PaymentNotRefundable, RefundExceedsPayment
from payments.models import Payment
from payments.services import payment_sync_from_channel
from refunds.models import Refund
from refunds.services import refund_request
from tests.factories import make_payment

pytestmark = pytest.mark.django_db(transaction=True)


def make_paid_payment(account: ChannelAccount, gateway: Any) -> Payment:
    payment = make_payment(account=account)
    gateway.pay(account.channel, payment.payment_no)
    return payment_sync_from_channel(payment_id=payment.pk)


def race(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        try:
            barrier.wait()
            return fn(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_parallel_refunds_never_exceed_the_payment(wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payment = make_paid_payment(wechat_account, gateway_client)

    def attempt(i: int) -> bool:
        with suppress(RefundExceedsPayment):
            refund_request(payment_id=payment.pk, refund_no=f"r-{i}", amount=600)
            return True
        return False

    assert sum(race(6, attempt)) == 1
    assert list(Refund.objects.values_list("amount", flat=True)) == [600]


def test_one_refund_no_sent_many_times_at_once_refunds_once(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_paid_payment(wechat_account, gateway_client)
    numbers = race(6, lambda i: refund_request(payment_id=payment.pk, refund_no="same", amount=300)[0].pk)
    assert len(set(numbers)) == 1 and Refund.objects.count() == 1
    refunds_at_channel = [t for t in gateway_client.trades() if t["kind"] == "refund"]
    assert [r["out_refund_no"] for r in refunds_at_channel] == ["same"]


def test_an_unpaid_payment_cannot_be_refunded(wechat_account: ChannelAccount) -> None:
    payment = make_payment(account=wechat_account)
    with pytest.raises(PaymentNotRefundable):
        refund_request(payment_id=payment.pk, refund_no="r-unpaid", amount=1)
    assert not Refund.objects.exists()
