"""The success sweep's work: asking the channel about payments whose outcome paycore has not
heard, on a back-off schedule, so a lost notification never leaves money unrecorded."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.base import TradeStatus
from channels.services import adapter_for, channel_call
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.sweeps import next_on_schedule
from payments.locks import payment_lock
from payments.models import Payment
from payments.services.sync import payment_apply_trade
from payments.states import GIVEN_UP_STATES, OPEN_STATES, payment_move

S = Payment.Status
_UNPAID = frozenset({TradeStatus.NOT_PAID, TradeStatus.NOT_FOUND})


def payment_check(*, payment_id: int) -> Payment:
    """Query one payment and apply the answer. An open payment is settled (the channel may wait
    for paycore to finish it, e.g. PayPal's capture); a payment paycore closed without the
    channel's confirmation is only read, so no money is taken after paycore gave up on it."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    watched = payment.status in GIVEN_UP_STATES and payment.watch_until is not None
    if payment.status not in OPEN_STATES and not watched:
        return payment
    adapter = adapter_for(payment.channel_account)
    read = adapter.query if watched else adapter.settle
    with channel_call("query"):
        trade = read(payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no)
    payment = payment_apply_trade(payment_id=payment_id, trade=trade, source=EventSource.SCHEDULER)
    if payment.status == S.CLIENT_REPORTED and trade.status in _UNPAID:
        payment = _withdraw_client_report(payment_id, evidence={"trade": jsonable(trade)})
    return payment


def payment_next_check(payment: Payment, *, now: datetime | None = None) -> datetime | None:
    """When the success sweep should look at this payment again: 15 s, 30 s, 1 min, 3 min...
    after it was created, hourly at most, never past its expiry (the close sweep takes over
    then); a watched closed payment until its watch ends."""
    now = now or timezone.now()
    if payment.status in GIVEN_UP_STATES and payment.watch_until is not None:
        if payment.watch_until <= now:
            return None
        return min(next_on_schedule(payment.created_at, now), payment.watch_until)
    if payment.status not in (S.PENDING, S.CLIENT_REPORTED):
        return None
    return min(next_on_schedule(payment.created_at, now), max(payment.expires_at, now))


@transaction.atomic(durable=True)
def _withdraw_client_report(payment_id: int, *, evidence: dict[str, object]) -> Payment:
    """The app said paid, the channel keeps saying unpaid: after a short grace the report is
    withdrawn (back to PENDING), so the orders can be paid another way."""
    payment = payment_lock(payment_id)
    if payment.status != S.CLIENT_REPORTED:
        return payment
    reported_at = payment.events.filter(to_status=S.CLIENT_REPORTED).values_list("created_at", flat=True).last()
    trust = timedelta(seconds=settings.CLIENT_REPORT_TRUST_SECONDS)
    if reported_at is not None and timezone.now() - reported_at < trust:
        return payment
    payment_move(
        payment, S.PENDING, source=EventSource.SCHEDULER, evidence={"reason": "the channel says unpaid", **evidence}
    )
    payment.save(update_fields=["status", "updated_at"])
    return payment
