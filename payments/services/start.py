"""Placing the payment at its channel: the prepay whose data the app's payment SDK needs."""

from __future__ import annotations

from django.db import transaction

from channels.base import PrepayRequest, TradeStatus
from channels.services import adapter_for, channel_call, channel_notify_url
from paycore.errors import ChannelRejectedError
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.writes import save_fields
from payments.locks import payment_lock
from payments.models import Payment
from payments.states import payment_move


def payment_start(*, payment_id: int) -> Payment:
    """Prepay at the channel and move CREATED -> PENDING with the data the app's SDK needs.

    No lock is held during the call. Repeating is safe: every channel dedupes by payment_no,
    so concurrent starts of one payment get the same channel trade.
    """
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.status != Payment.Status.CREATED:
        return payment
    return payment_prepay(payment, description=payment_description(payment))


def payment_prepay(payment: Payment, *, description: str) -> Payment:
    """``payment_start`` for a CREATED payment already in hand (with its channel account), as
    ``payment_place`` has it right after creating it: no read back of what it just wrote."""
    payment_id = payment.pk
    if payment.method == Payment.Method.PAYCODE:
        return payment  # charged with its scanned code by payments.services.paycode, never prepaid
    adapter = adapter_for(payment.channel_account)
    request = PrepayRequest(
        payment_no=payment.payment_no,
        amount=payment.amount,
        currency=payment.currency,
        description=description,
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
            save_fields(payment, "status", "prepay_data", "channel_trade_no", "updated_at")
    if result.status == TradeStatus.PAID:
        # Channels that settle at once (points) still go through an active query before SUCCEEDED.
        from payments.services.sync import payment_sync_from_channel

        return payment_sync_from_channel(payment_id=payment_id, source=EventSource.CHANNEL_QUERY)
    return payment


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


def payment_description(payment: Payment) -> str:
    """What the payer's bill shows: the first orders' descriptions."""
    names = payment.maps.select_related("order").order_by("order_id").values_list("order__description", flat=True)
    return describe(payment, list(names[:3]))


def describe(payment: Payment, order_descriptions: list[str]) -> str:
    return "; ".join(order_descriptions[:3])[:120] or payment.payment_no
