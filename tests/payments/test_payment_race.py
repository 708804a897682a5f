"""Concurrent requests on PostgreSQL: the order lock plus the state machine leave one payment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from channels.models import ChannelAccount
from payments.models import Payment, PaymentOrderMap
from payments.services import payment_create, payment_place
from tests.factories import make_order


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_creates_for_one_order_leave_one_pending_payment(wechat_account: ChannelAccount) -> None:
    order = make_order(amount=880)
    barrier = threading.Barrier(20)

    def attempt(_: int) -> str:
        try:
            barrier.wait()
            payment, _created = payment_place(
                order_ids=[order.pk], customer_ref="cust-1", channel="wechat", method="app"
            )
            return payment.payment_no
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        numbers: list[Any] = list(pool.map(attempt, range(20)))
    assert len(set(numbers)) == 1
    assert Payment.objects.count() == 1
    assert Payment.objects.get().status == "PENDING"
    assert PaymentOrderMap.objects.filter(order=order, is_current=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_on_two_channels_leave_one_current_map(
    wechat_account: ChannelAccount, channel_account: Any
) -> None:
    channel_account("alipay")
    order = make_order()
    barrier = threading.Barrier(10)

    def attempt(n: int) -> None:
        try:
            barrier.wait()
            channel = "wechat" if n % 2 else "alipay"
            payment_create(order_ids=[order.pk], customer_ref="cust-1", channel=channel, method="app")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(attempt, range(10)))
    assert PaymentOrderMap.objects.filter(order=order, is_current=True).count() == 1
    current = PaymentOrderMap.objects.get(order=order, is_current=True).payment
    others = Payment.objects.exclude(pk=current.pk)
    assert all(p.status in ("CLOSED", "CREATED") for p in others)
