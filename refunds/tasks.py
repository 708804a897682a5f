"""Celery entry points of the refunds app (see payments/tasks.py for the rules)."""

from __future__ import annotations

from celery import shared_task

from paycore.errors import ChannelUnavailableError


@shared_task(
    name="paycore.refunds.submit",
    autoretry_for=(ChannelUnavailableError,),
    retry_backoff=True,
    max_retries=8,
    soft_time_limit=30,
)
def refund_submit(refund_id: int) -> None:
    from refunds.services import refund_submit as submit

    submit(refund_id=refund_id)
