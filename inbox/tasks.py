"""Celery entry point of the inbox: apply one verified notification after its commit."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="paycore.notifications.process", soft_time_limit=30)
def notification_process(notification_id: int) -> None:
    from inbox.services import notification_process as process

    process(notification_id=notification_id)
