"""The refund sweep's work on one refund: submit what was never taken, ask about what the
channel is processing, and try again what it refused."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from paycore.models import EventSource
from paycore.sweeps import backoff, next_on_schedule
from refunds.models import Refund
from refunds.services.apply import refund_submit, refund_sync_from_channel
from refunds.services.ops import refund_retry

R = Refund.Status


def refund_advance(*, refund_id: int) -> Refund:
    """One step forward; channel outages raise, and the sweep backs off on this row."""
    refund = Refund.objects.get(pk=refund_id)
    if refund.status == R.FAILED:
        refund = refund_retry(refund_id=refund_id, source=EventSource.SCHEDULER)
    if refund.status == R.PENDING:
        return refund_submit(refund_id=refund_id, source=EventSource.SCHEDULER)
    if refund.status == R.PROCESSING:
        return refund_sync_from_channel(refund_id=refund_id, source=EventSource.SCHEDULER)
    return refund


def refund_next_check(refund: Refund, *, now: datetime | None = None) -> datetime | None:
    """When to look again: a refund the channel is processing on a back-off by its age; a FAILED
    one when its retry is due (set when it failed); none once settled or with ops."""
    now = now or timezone.now()
    if refund.status == R.PROCESSING:
        return next_on_schedule(refund.created_at, now)
    if refund.status == R.PENDING:
        return now + timedelta(seconds=30)
    if refund.status == R.FAILED and refund.fail_code != "no_room_left":
        return refund.next_check_at or now + backoff(1)
    return None
