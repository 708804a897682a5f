"""Closing a payment: at the channel first, then locally, so that a paid trade is never
recorded as closed by mistake."""

from __future__ import annotations

import logging

from django.db import transaction

from channels.base import ChannelRejected, NotSupported, TradeStatus
from channels.services import adapter_for, channel_call
from paycore.errors import ChannelRejectedError, ChannelUnavailableError
from paycore.models import EventSource
from payments.locks import payment_lock
from payments.models import Payment
from payments.services.sync import payment_apply_trade
from payments.states import OPEN_STATES, PAYMENT_TRANSITIONS, payment_move

log = logging.getLogger(__name__)


def payment_close(*, payment_id: int, reason: str, source: str = EventSource.API, actor: str = "") -> Payment:
    """Close an unpaid payment. If the channel says it was paid meanwhile, it is recorded as
    SUCCEEDED instead and returned as such."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.status == Payment.Status.CLOSED:
        return payment
    PAYMENT_TRANSITIONS.check(payment.status, Payment.Status.CLOSED, payment_no=payment.payment_no)
    adapter = adapter_for(payment.channel_account)
    with channel_call("close"):
        try:
            adapter.close(payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no)
        except NotSupported:
            pass  # the channel lets unpaid trades expire by themselves
        except ChannelRejected:
            # Possibly paid meanwhile: believe the query, not the refusal.
            trade = adapter.query(payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no)
            if trade.status == TradeStatus.PAID:
                return payment_apply_trade(payment_id=payment_id, trade=trade, source=EventSource.CHANNEL_QUERY)
            if trade.status in (TradeStatus.NOT_PAID, TradeStatus.USER_PAYING):
                raise  # still open at the channel: closing locally would hide a payable trade
    return _close_locally(payment_id, reason=reason, source=source, actor=actor)


def payment_close_superseded(*, payment_id: int) -> Payment | None:
    """Close a payment whose orders moved to a newer payment, unless it became current again
    (it was paid) or left the open states meanwhile. Channel trouble is logged; the close sweep
    retries expired payments."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in OPEN_STATES or payment.maps.filter(is_current=True).exists():
        return None
    try:
        return payment_close(payment_id=payment_id, reason="superseded", source=EventSource.SCHEDULER)
    except (ChannelUnavailableError, ChannelRejectedError) as exc:
        log.warning("closing superseded payment %s failed: %s", payment.payment_no, type(exc).__name__)
        return None


@transaction.atomic(durable=True)
def _close_locally(payment_id: int, *, reason: str, source: str, actor: str) -> Payment:
    payment = payment_lock(payment_id)
    if payment.status in OPEN_STATES:
        payment_move(payment, Payment.Status.CLOSED, source=source, evidence={"reason": reason}, actor=actor)
        payment.save(update_fields=["status", "updated_at"])
    return payment
