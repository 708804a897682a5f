"""Merchants and orders: creation and the order side of payment outcomes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from orders.models import Merchant, Order, OrderItem
from paycore import money
from paycore.errors import InvalidRequest, MerchantOrderNoReused, MerchantSuspended
from paycore.ids import new_order_no
from paycore.outbox import outbox_add
from paycore.writes import insert_family

UNIQUE_NUMBER = ("merchant", "merchant_order_no")  # an order's unique constraint besides its own number


@dataclass(frozen=True, slots=True)
class ItemInput:
    name: str
    unit_price: int
    quantity: int


def merchant_create(*, code: str, name: str, notify_url: str = "", webhook_secret: str = "") -> Merchant:
    return Merchant.objects.create(code=code, name=name, notify_url=notify_url, webhook_secret=webhook_secret)


@transaction.atomic(durable=True)
def merchant_set_status(
    *, merchant_id: int, status: str, actor: str = "", reason: str = "", evidence: dict[str, Any] | None = None
) -> Merchant:
    """Suspend or reinstate a merchant. The event tells the merchant its new status and a short
    ``reason`` code; who acted and the evidence (a risk rule's figures, ops' note) stay inside
    paycore, in the event's context, for ops to review."""
    merchant = Merchant.objects.select_for_update(no_key=True).get(pk=merchant_id)
    if merchant.status != status:
        was = merchant.status
        merchant.status = status
        merchant.save(update_fields=["status", "updated_at"])
        outbox_add(
            topic="merchant.suspended" if status == Merchant.Status.SUSPENDED else "merchant.reinstated",
            key=merchant.code,
            merchant_id=merchant.pk,
            payload={"merchant": merchant.code, "status": status, "previous_status": was, "reason": reason},
            context={"actor": actor, "evidence": evidence or {}},
        )
    return merchant


def order_create(order: Order) -> tuple[Order, bool]:
    """Create a new order (from ``order_new``); the same merchant order number with the same
    content returns the existing order (``created`` False), with other content it is a conflict."""
    if order_insert(order):
        return order, True
    return order_existing(order), False


def order_new(
    *,
    merchant: Merchant,
    merchant_order_no: str,
    customer_ref: str,
    description: str,
    currency: str,
    items: list[ItemInput],
    expires_at: datetime | None = None,
    shipping_address: str = "",
    phone: str = "",
) -> Order:
    """The order a create asks for, checked and not yet written, its items in ``item_list``."""
    if merchant.status != Merchant.Status.ACTIVE:
        raise MerchantSuspended(f"merchant {merchant.code} is suspended", extra={"merchant": merchant.code})
    if not money.is_currency(currency):
        raise InvalidRequest.field("currency", f"unknown currency {currency!r}", code="unknown_currency")
    amount = sum(item.unit_price * item.quantity for item in items)
    if amount <= 0:
        raise InvalidRequest.field("items", "the order amount must be positive", code="min_value")
    if amount > money.MAX_AMOUNT:
        raise InvalidRequest.field("items", f"the order amount may not exceed {money.MAX_AMOUNT}", code="max_value")
    now = timezone.now()
    expires_at = expires_at or now + timedelta(seconds=settings.ORDER_DEFAULT_TTL_SECONDS)
    if not now < expires_at <= now + timedelta(seconds=settings.ORDER_MAX_TTL_SECONDS):
        raise InvalidRequest.field("expires_at", "must be in the future and within the maximum order lifetime")
    order = Order(
        order_no=new_order_no(),
        merchant=merchant,
        merchant_order_no=merchant_order_no,
        customer_ref=customer_ref,
        description=description,
        amount=amount,
        currency=currency,
        expires_at=expires_at,
        shipping_address=shipping_address,
        phone=phone,
    )
    order.item_list = [  # type: ignore[attr-defined]  # what OrderOutput reads
        OrderItem(order=order, name=i.name, unit_price=i.unit_price, quantity=i.quantity) for i in items
    ]
    return order


def order_insert(order: Order, *, with_rows: Callable[[], Sequence[models.Model]] | None = None) -> bool:
    """Write a new order (from ``order_new``) and its items; False, nothing written, if the
    merchant's order number is taken (a repeat, which is expected, not an error: see
    ``order_existing``). The rows ``with_rows`` returns (the request's stored answer, which shows
    the order's timestamps: it is called once they are set) are written with the order, only if
    it is: on PostgreSQL all in one statement, atomic without a transaction, so the API's busiest
    POST pays no BEGIN and COMMIT round trips (``insert_family``)."""
    items: list[OrderItem] = order.item_list  # type: ignore[attr-defined]
    return insert_family(order, conflict_fields=UNIQUE_NUMBER, children=items, link="order", followers=with_rows)


def order_existing(order: Order) -> Order:
    """The stored order with ``order``'s merchant order number, when it asks for the same; a
    repeat with other content is refused, never silently dropped."""
    existing = Order.objects.get(merchant=order.merchant, merchant_order_no=order.merchant_order_no)
    items = [ItemInput(name=i.name, unit_price=i.unit_price, quantity=i.quantity) for i in order.item_list]  # type: ignore[attr-defined]
    differs = _differences(
        existing, customer_ref=order.customer_ref, description=order.description, currency=order.currency, items=items
    )
    if differs:
        raise MerchantOrderNoReused(
            "this merchant order number is already used by an order with other content",
            extra={"merchant_order_no": order.merchant_order_no, "order_no": existing.order_no, "differs": differs},
        )
    return existing


def _differences(
    order: Order, *, customer_ref: str, description: str, currency: str, items: list[ItemInput]
) -> list[str]:
    """What a repeated create asks for that the stored order does not have. An exact repeat
    (a retried request) gets the order back; anything else must not be silently dropped."""
    stored = [ItemInput(name=i.name, unit_price=i.unit_price, quantity=i.quantity) for i in order.items.order_by("pk")]
    wanted = {
        "customer_ref": (order.customer_ref, customer_ref),
        "description": (order.description, description),
        "currency": (order.currency, currency),
        "items": (stored, list(items)),
    }
    return [name for name, (have, want) in wanted.items() if have != want]


def order_is_payable(order: Order, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return order.status == Order.Status.PENDING_PAYMENT and order.expires_at > now
