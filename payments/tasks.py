"""Celery entry points of the payments app: ids in, one idempotent service call (delivery is at
least once). Services enqueue these after commit through a function-local import."""

from __future__ import annotations

from celery import shared_task

from paycore.errors import ChannelUnavailableError
from paycore.models import EventSource


@shared_task(
    name="paycore.payments.sync",
    autoretry_for=(ChannelUnavailableError,),
    retry_backoff=True,
    max_retries=8,
    soft_time_limit=30,
)
def payment_sync(payment_id: int) -> None:
    from payments.services import payment_sync_from_channel

    payment_sync_from_channel(payment_id=payment_id, source=EventSource.SCHEDULER)


@shared_task(name="paycore.payments.close_superseded", soft_time_limit=30)
def payment_close_superseded(payment_id: int) -> None:
    from payments.services import payment_close_superseded as close_superseded

    close_superseded(payment_id=payment_id)
