"""Callbacks and refund state changes for one payment, at once, on PostgreSQL: never a deadlock.

A stored callback references its payment and refund; PostgreSQL checks those foreign keys at
COMMIT with ``FOR KEY SHARE`` on both rows. A refund state change locks the payment, then the
refund. If those locks were ``FOR UPDATE`` the two transactions could wait on each other; the
service locks with ``FOR NO KEY UPDATE``, which foreign-key checks never wait for.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, transaction

from channels.base import RefundState, RefundStatus
from channels.models import ChannelAccount
from inbox.models import InboundNotification
from payments.models import Payment
from payments.services import payment_sync_from_channel
from refunds.models import Refund
from refunds.services import refund_apply_state, refund_request
from tests.factories import make_payment

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 150


def _paid_payment_with_refund(account: ChannelAccount, gateway: Any) -> tuple[Payment, Refund]:
    payment = make_payment(account=account)
    gateway.pay(account.channel, payment.payment_no)
    payment = payment_sync_from_channel(payment_id=payment.pk)
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-lock", amount=100)
    return payment, refund


def test_callbacks_and_refund_changes_for_one_payment_never_deadlock(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment, refund = _paid_payment_with_refund(wechat_account, gateway_client)
    barrier = threading.Barrier(2)
    processing = RefundState(
        refund_no=refund.refund_no, status=RefundStatus.PROCESSING, channel_refund_no=None, amount=refund.amount
    )

    def store_callback(_: int) -> None:
        barrier.wait()
        with transaction.atomic():
            InboundNotification.objects.create(
                channel="wechat",
                channel_account=wechat_account,
                body=b"{}",
                payment=payment,
                refund=refund,
                kind="REFUND",
            )

    def change_refund(_: int) -> None:
        barrier.wait()
        refund_apply_state(refund_id=refund.pk, state=processing, source="channel-query")

    def run(fn: Any) -> Any:
        def wrapped(i: int) -> Any:
            try:
                return fn(i)
            finally:
                connection.close()

        return wrapped

    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(ROUNDS):
            futures = [pool.submit(run(store_callback), i), pool.submit(run(change_refund), i)]
            for future in futures:
                future.result()  # a deadlock surfaces here as OperationalError
    assert InboundNotification.objects.filter(refund=refund).count() == ROUNDS
