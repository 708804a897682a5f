"""Celery entry points. Each takes ids, has a stable name and calls one idempotent service
(delivery is at least once); retries only on errors that may pass."""

from __future__ import annotations

from celery import shared_task

from paycore.errors import ChannelUnavailableError


@shared_task(name="paycore.payments.sync", autoretry_for=(ChannelUnavailableError,), retry_backoff=True,
             max_retries=8, soft_time_limit=30)
def payment_sync(payment_id: int) -> None:
    from payments.models import EventSource
    from payments.services import payment_sync_from_channel

    payment_sync_from_channel(payment_id=payment_id, source=EventSource.SCHEDULER)


@shared_task(name="paycore.payments.close_superseded", soft_time_limit=30)
def payment_close_superseded(payment_id: int) -> None:
    from payments.services import payment_close_superseded as close_superseded

    close_superseded(payment_id=payment_id)


@shared_task(name="paycore.notifications.process", soft_time_limit=30)
def notification_process(notification_id: int) -> None:
    from payments.services import notification_process as process

    process(notification_id=notification_id)


@shared_task(name="paycore.refunds.submit", autoretry_for=(ChannelUnavailableError,), retry_backoff=True,
             max_retries=8, soft_time_limit=30)
def refund_submit(refund_id: int) -> None:
    from refunds.services import refund_submit as submit

    submit(refund_id=refund_id)


@shared_task(name="paycore.notifications.sweep", soft_time_limit=240)
def notifications_sweep() -> int:
    from payments.services import notifications_retry_unapplied

    return notifications_retry_unapplied()
