"""Tasks really travel through Redis to a Celery worker (the rest of the suite runs them eagerly)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from channels.models import ChannelAccount
from config.celery import app
from payments.models import Payment
from payments.tasks import payment_sync
from tests.factories import make_payment, wait_until


@pytest.fixture
def redis_worker(settings: Any) -> Iterator[None]:
    assert app.conf.broker_url.startswith("redis://"), "the suite runs Celery on Redis"
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield
    finally:
        app.conf.task_always_eager = True


@pytest.mark.django_db(transaction=True)
def test_a_sync_task_sent_through_redis_confirms_the_payment(
    wechat_account: ChannelAccount, gateway_client: Any, redis_worker: None
) -> None:
    payment = make_payment(account=wechat_account)
    gateway_client.pay("wechat", payment.payment_no)
    payment_sync.delay(payment.pk)
    assert wait_until(lambda: Payment.objects.get(pk=payment.pk).status == "SUCCEEDED")
    assert payment.events.get(to_status="SUCCEEDED").source == "scheduler"
