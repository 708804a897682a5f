"""Consumers inside paycore read the same stream with cursors of their own: a failing one holds
back only itself (never the webhooks, never another consumer), and none skips an event whose
transaction commits after a later one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from channels.models import ChannelAccount
from outbox.models import ConsumerCursor, RiskDecision
from outbox.services import consumers_run
from outbox.services.consumers import CONSUMERS
from outbox.services.risk import risk_handle
from paycore.models import OutboxEvent
from paycore.outbox import outbox_add
from paycore.sweeps import sweep_run
from tests.factories import make_order, make_paid_payment
from tests.outbox.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failing_risk_consumer_does_not_delay_webhooks_or_other_consumers(
    receiver: Callable[..., Receiver], wechat_account: ChannelAccount, gateway_client: Any, consumers: Any
) -> None:
    seen: list[str] = []

    def broken(event: OutboxEvent) -> None:
        raise RuntimeError("risk store is down")

    consumers("risk", broken, {"payment.succeeded"})
    consumers("reporting", lambda event: seen.append(str(event.event_id)))
    shop = receiver()
    make_paid_payment(account=wechat_account, gateway=gateway_client, orders=[make_order(merchant=shop.merchant)])
    event = OutboxEvent.objects.get(merchant=shop.merchant, topic="payment.succeeded")
    assert [b["id"] for b in shop.accepted()] == [str(event.event_id)]  # delivered at once all the same
    assert seen == [str(event.event_id)]
    risk = ConsumerCursor.objects.get(name="risk")
    assert risk.check_failures == 1 and "risk store is down" in risk.last_check_error
    assert risk.next_check_at > timezone.now() and risk.last_event_pk < event.pk
    # Repaired: the consumer resumes from the event it failed on once its back-off is over.
    consumers("risk", risk_handle, {"payment.succeeded"})
    sweep_run(CONSUMERS, now=timezone.now() + timedelta(minutes=5))
    risk.refresh_from_db()
    assert risk.check_failures == 0 and risk.last_event_pk == event.pk
    assert RiskDecision.objects.filter(event=event).count() == 1


def test_a_consumer_never_skips_an_event_whose_transaction_commits_later(receiver: Any, consumers: Any) -> None:
    seen: list[str] = []
    consumers("reporting", lambda event: seen.append(event.key))
    written, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                outbox_add(topic="test.ping", key="early")  # the smaller id, committed last
                written.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert written.wait(10)
    with transaction.atomic():
        outbox_add(topic="test.ping", key="late")
    consumers_run(names=["reporting"])
    assert seen == []  # "late" waits: a transaction older than it is still open
    release.set()
    thread.join()
    consumers_run(names=["reporting"])
    assert seen == ["early", "late"]
    assert ConsumerCursor.objects.get(name="reporting").handled == 2
