"""The inbox sweep (see paycore.sweeps for the mechanics): verified notifications that a
crash, a broker outage or a failed query left unapplied are applied with back-off; one that
keeps failing is retired to ops after its budget instead of being retried forever."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from inbox.models import InboundNotification
from inbox.services import notification_process
from paycore.sweeps import Done, Sweep

N = InboundNotification


def _apply(pk: int) -> Done:
    inbound = notification_process(notification_id=pk)
    return Done(inbound.outcome.lower(), inbound.next_check_at)


def _unapplied(now: datetime) -> Q:
    return Q(verification=N.Verification.VERIFIED, outcome__in=[N.Outcome.PENDING, N.Outcome.FAILED])


INBOX = Sweep(
    name="inbox",
    model=InboundNotification,
    due=_unapplied,
    work=_apply,
    attempts_field="attempts",
    error_field="last_error",
    reset_on_success=False,
    null_is_due=True,
)
