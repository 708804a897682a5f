"""The beat's sweep tasks: thin entry points that each run one sweep service. The tasks that
services enqueue after a commit live in their own apps (payments/tasks.py and siblings)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="paycore.notifications.sweep", soft_time_limit=240)
def notifications_sweep() -> int:
    from inbox.services import notifications_retry_unapplied

    return notifications_retry_unapplied()
