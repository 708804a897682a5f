"""Reads of payments, scoped to what an API client may see.

A platform key sees whole payments. A merchant key sees a payment that pays any of its orders,
but only its own part of it: its own payment<->order maps, and as the amount the sum of those
maps. Another merchant's order numbers and amounts in a shared payment never reach it."""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet, Sum

from paycore.errors import NotFound
from paycore.models import ApiClient
from paycore.prepared import PreparedQuery
from payments.models import Payment, PaymentOrderMap

# Encrypted columns nobody is shown here: not decrypted for every read of a payment.
_UNSHOWN = ("payment__payer_id", "order__shipping_address", "order__phone")
# What PaymentOutput shows (and the keys that join it): the status read that app backends poll
# loads only these columns of the three tables. A caller that goes on to read another column of
# the payment gets it loaded then.
_SHOWN = (
    *("payment_id", "order_id", "amount", "is_current", "outcome"),
    *("order__order_no", "order__merchant_id"),
    *(
        f"payment__{name}"
        for name in (
            "payment_no", "channel", "method", "status", "amount", "currency", "channel_trade_no", "customer_ref",
            "expires_at", "paid_at", "created_at", "prepay_data", "failure_code", "store_id", "device_id",
            "operator_id", "channel_account_id",
        )
    ),
)  # fmt: skip


def payments_visible_to(client: ApiClient) -> QuerySet[Payment]:
    """Payments with ``shown_maps`` (the client's own part) and ``shown_amount`` (its sum)."""
    maps = PaymentOrderMap.objects.select_related("order").defer(*_UNSHOWN[1:]).order_by("order_id")
    payments = Payment.objects.defer("payer_id")
    if not client.merchant_id:
        return payments.prefetch_related(Prefetch("maps", queryset=maps, to_attr="shown_maps")).annotate(
            shown_amount=F("amount")
        )
    own = Q(order__merchant_id=client.merchant_id)
    return (
        payments.filter(Exists(PaymentOrderMap.objects.filter(own, payment=OuterRef("pk"))))
        .prefetch_related(Prefetch("maps", queryset=maps.filter(own), to_attr="shown_maps"))
        .annotate(shown_amount=Sum("maps__amount", filter=Q(maps__order__merchant_id=client.merchant_id)))
    )


def payment_get_for_client(
    *, client: ApiClient, payment_no: str | None = None, channel_trade_no: str | None = None
) -> Payment:
    """One payment as ``payments_visible_to`` shows it, in one query: its maps joined to the
    payment and the orders (every GET of a payment's status runs this, so it is worth the loop
    over a handful of maps in Python instead of a second query for the prefetch, and compiling
    the query once per process)."""
    rows = _maps_by_payment_no(no=payment_no) if payment_no else _maps_by_channel_trade_no(no=channel_trade_no or "")
    shown = [m for m in rows if client.sees_merchant(m.order.merchant_id)]
    if not shown:
        raise NotFound(
            "no such payment",
            extra={"payment_no": payment_no} if payment_no else {"channel_trade_no": channel_trade_no},
        )
    payment = shown[0].payment
    payment.shown_maps = shown  # type: ignore[attr-defined]
    payment.shown_amount = payment.amount if not client.merchant_id else sum(m.amount for m in shown)  # type: ignore[attr-defined]
    return payment


def _shown_maps(**lookup: str) -> QuerySet[PaymentOrderMap]:
    maps = PaymentOrderMap.objects.filter(**lookup).select_related("payment", "order")
    return maps.only(*_SHOWN).order_by("order_id")


@PreparedQuery
def _maps_by_payment_no(*, no: str) -> QuerySet[PaymentOrderMap]:
    return _shown_maps(payment__payment_no=no)


@PreparedQuery
def _maps_by_channel_trade_no(*, no: str) -> QuerySet[PaymentOrderMap]:
    return _shown_maps(payment__channel_trade_no=no)


def payment_is_shared_beyond(payment: Payment, client: ApiClient) -> bool:
    """Whether the payment also pays orders of merchants other than the client's."""
    if not client.merchant_id:
        return False
    return PaymentOrderMap.objects.filter(payment=payment).exclude(order__merchant_id=client.merchant_id).exists()
