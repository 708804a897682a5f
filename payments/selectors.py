"""Reads of payments, scoped to what an API client may see.

A platform key sees whole payments. A merchant key sees a payment that pays any of its orders,
but only its own part of it: its own payment<->order maps, and as the amount the sum of those
maps. Another merchant's order numbers and amounts in a shared payment never reach it."""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet, Sum

from paycore.errors import NotFound
from paycore.models import ApiClient
from payments.models import Payment, PaymentOrderMap


def payments_visible_to(client: ApiClient) -> QuerySet[Payment]:
    maps = PaymentOrderMap.objects.select_related("order").order_by("order_id")
    if not client.merchant_id:
        return Payment.objects.prefetch_related(Prefetch("maps", queryset=maps)).annotate(shown_amount=F("amount"))
    own = Q(order__merchant_id=client.merchant_id)
    return (
        Payment.objects.filter(Exists(PaymentOrderMap.objects.filter(own, payment=OuterRef("pk"))))
        .prefetch_related(Prefetch("maps", queryset=maps.filter(own)))
        .annotate(shown_amount=Sum("maps__amount", filter=Q(maps__order__merchant_id=client.merchant_id)))
    )


def payment_get_for_client(
    *, client: ApiClient, payment_no: str | None = None, channel_trade_no: str | None = None
) -> Payment:
    qs = payments_visible_to(client)
    payment = (qs.filter(payment_no=payment_no) if payment_no else qs.filter(channel_trade_no=channel_trade_no)).first()
    if payment is None:
        raise NotFound(
            "no such payment",
            extra={"payment_no": payment_no} if payment_no else {"channel_trade_no": channel_trade_no},
        )
    return payment


def payment_is_shared_beyond(payment: Payment, client: ApiClient) -> bool:
    """Whether the payment also pays orders of merchants other than the client's."""
    if not client.merchant_id:
        return False
    return PaymentOrderMap.objects.filter(payment=payment).exclude(order__merchant_id=client.merchant_id).exists()
