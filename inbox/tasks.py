"""Celery entry points of the inbox: apply verified notifications after their commit."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(name="paycore.notifications.process", soft_time_limit=30)
def notification_process(notification_id: int) -> None:
    from inbox.services import notification_process as process

    process(notification_id=notification_id)


@shared_task(name="paycore.notifications.process_many", soft_time_limit=120)
def notifications_process(notification_ids: list[int]) -> None:
    """Several notifications one web process received while its last message was being published
    (one message instead of one each under load). Each is applied on its own: one that raises
    stays unapplied for the inbox sweep and never stops the others."""
    from inbox.services import notification_process as process

    for notification_id in notification_ids:
        try:
            process(notification_id=notification_id)
        except Exception:
            log.exception("notification %s: applying failed; the inbox sweep retries it", notification_id)
