"""Placing the payment at its channel (prepay, or a payment-code charge)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from channels.base import ChargeRequest, PrepayRequest, TradeStatus
from channels.services import adapter_for, channel_call, channel_notify_url
from paycore.errors import ChannelRejectedError, InvalidRequest
from paycore.jsonable import jsonable
from paycore.models import EventSource
from payments.locks import payment_lock
from payments.models import Payment
from payments.services.sync import payment_apply_trade
from payments.states import payment_move


def payment_start(*, payment_id: int, auth_code: str = "") -> Payment:
    """Prepay at the channel and move CREATED -> PENDING with the data the app's SDK needs.

    No lock is held during the call. Repeating is safe: every channel dedupes by payment_no,
    so concurrent starts of one payment get the same channel trade.
    """
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.status != Payment.Status.CREATED:
        return payment
    adapter = adapter_for(payment.channel_account)
    if payment.method == Payment.Method.PAYCODE:
        return _charge(payment, adapter, auth_code)
    request = PrepayRequest(
        payment_no=payment.payment_no,
        amount=payment.amount,
        currency=payment.currency,
        description=_description(payment),
        method=payment.method,
        notify_url=channel_notify_url(payment.channel_account),
        expires_at=payment.expires_at,
        payer_id=payment.payer_id or None,
        client_ip=payment.client_ip,
        return_url=payment.return_url or None,
        cancel_url=payment.return_url or None,
    )
    try:
        with channel_call("prepay"):
            result = adapter.prepay(request)
    except ChannelRejectedError as exc:
        _fail(payment_id, exc)
        raise
    with transaction.atomic(durable=True):
        payment = payment_lock(payment_id)
        if payment.status == Payment.Status.CREATED:
            payment_move(
                payment, Payment.Status.PENDING, source=EventSource.API, evidence={"prepay": jsonable(result.raw)}
            )
            payment.prepay_data = jsonable(result.client_params)
            if result.channel_trade_no and not payment.channel_trade_no:
                payment.channel_trade_no = result.channel_trade_no
            payment.save(update_fields=["status", "prepay_data", "channel_trade_no", "updated_at"])
    if result.status == TradeStatus.PAID:
        # Channels that settle at once (points) still go through an active query before SUCCEEDED.
        from payments.services.sync import payment_sync_from_channel

        return payment_sync_from_channel(payment_id=payment_id, source=EventSource.CHANNEL_QUERY)
    return payment


def _charge(payment: Payment, adapter: Any, auth_code: str) -> Payment:
    if not auth_code:
        raise InvalidRequest.field("auth_code", "a payment-code payment needs the scanned auth_code", code="required")
    request = ChargeRequest(
        payment_no=payment.payment_no,
        amount=payment.amount,
        currency=payment.currency,
        description=_description(payment),
        auth_code=auth_code,
        client_ip=payment.client_ip,
        expires_at=payment.expires_at,
    )
    try:
        with channel_call("charge"):
            trade = adapter.charge(request)
    except ChannelRejectedError as exc:
        _fail(payment.pk, exc)
        raise
    return payment_apply_trade(payment_id=payment.pk, trade=trade, source=EventSource.CHANNEL_QUERY)


def _fail(payment_id: int, exc: ChannelRejectedError) -> None:
    with transaction.atomic(durable=True):
        payment = payment_lock(payment_id)
        if payment.status == Payment.Status.CREATED:
            payment_move(
                payment,
                Payment.Status.FAILED,
                source=EventSource.API,
                evidence={"channel_code": exc.extra.get("channel_code", "")},
            )
            payment.save(update_fields=["status", "updated_at"])


def _description(payment: Payment) -> str:
    names = list(payment.maps.select_related("order").values_list("order__description", flat=True)[:3])
    return "; ".join(names)[:120] or payment.payment_no
