"""Reads of payments, scoped to what an API client may see."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from paycore.errors import NotFound
from paycore.models import ApiClient
from payments.models import Payment, PaymentOrderMap


def payments_visible_to(client: ApiClient) -> QuerySet[Payment]:
    maps = PaymentOrderMap.objects.select_related("order").order_by("order_id")
    qs = Payment.objects.prefetch_related(Prefetch("maps", queryset=maps))
    if client.merchant_id:
        qs = qs.filter(
            Exists(PaymentOrderMap.objects.filter(payment=OuterRef("pk"), order__merchant_id=client.merchant_id))
        )
    return qs


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
