"""Asking for a refund: checked against what each order's share of the payment still allows,
under the payment lock, so concurrent refunds can never exceed it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from channels.services import adapter_for
from paycore.errors import (
    InvalidRequest,
    NotFound,
    PaymentNotRefundable,
    RefundExceedsPayment,
    RefundNoReused,
)
from paycore.models import EventSource
from payments.locks import payment_lock
from payments.models import Payment, PaymentOrderMap
from refunds.models import Refund, RefundAllocation, RefundAttempt, RefundEvent
from refunds.states import COUNTED_STATES

# The sweep's first look at a refund, should the submit task after commit never run.
SUBMIT_SAFETY_NET = timedelta(seconds=30)
# Numbers paycore makes for itself (its own refunds, retry attempts) start with this; clients
# may not use it, so the two can never collide.
OWN_NUMBER_PREFIX = "PC-"


def attempt_request_no(refund: Refund, number: int) -> str:
    """The number an attempt is known by at the channel: the refund's own for the first try,
    then one derived from the refund's id, so a retried retry is still the same attempt."""
    return refund.refund_no if number == 1 else f"{OWN_NUMBER_PREFIX}A{refund.pk}-{number}"


def refund_request(
    *,
    payment_id: int,
    refund_no: str,
    amount: int,
    reason: str = Refund.Reason.CUSTOMER_REQUEST,
    note: str = "",
    order_ids: Iterable[int] | None = None,
    merchant_id: int | None = None,
    source: str = EventSource.API,
    actor: str = "",
) -> tuple[Refund, bool]:
    """Create a refund; asking again with the same refund_no for the same payment and amount
    returns the original (``created`` False).

    The refund names the orders it refunds (``order_ids``; by default every order of the
    payment) and is spread over those orders' shares in order. ``merchant_id`` limits it to that
    merchant's orders: a merchant refunds its own share of a shared payment, never another's.
    """
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    problem = adapter_for(payment.channel_account).refund_no_problem(refund_no=refund_no, payment_no=payment.payment_no)
    if problem:
        raise InvalidRequest.field("refund_no", problem, code="refund_no_unsupported")
    try:
        refund, created = _refund_create(
            payment_id=payment_id,
            refund_no=refund_no,
            amount=amount,
            reason=reason,
            note=note,
            order_ids=None if order_ids is None else sorted(set(order_ids)),
            merchant_id=merchant_id,
            source=source,
            actor=actor,
        )
    except IntegrityError:  # the same refund_no raced in for another payment
        refund, created = _existing(refund_no, payment_id=payment_id, amount=amount), False
    if created:
        from refunds.tasks import refund_submit as refund_submit_task

        # Robust: a broker outage must not fail the request; the refund sweep submits it later.
        transaction.on_commit(lambda: refund_submit_task.delay(refund.pk), robust=True)
    return refund, created


def refundable_by_map(payment: Payment, *, exclude_refund_id: int | None = None) -> dict[int, int]:
    """What may still be refunded of each of the payment's shares (map id -> minor units)."""
    counted = RefundAllocation.objects.filter(payment_map__payment=payment, refund__status__in=COUNTED_STATES)
    if exclude_refund_id is not None:
        counted = counted.exclude(refund_id=exclude_refund_id)
    used = counted.values("payment_map_id").annotate(total=Sum("amount"))
    taken = {row["payment_map_id"]: row["total"] for row in used}
    return {m.pk: m.amount - taken.get(m.pk, 0) for m in payment.maps.all()}


@transaction.atomic(durable=True)
def _refund_create(
    *,
    payment_id: int,
    refund_no: str,
    amount: int,
    reason: str,
    note: str,
    order_ids: list[int] | None,
    merchant_id: int | None,
    source: str,
    actor: str,
) -> tuple[Refund, bool]:
    payment = payment_lock(payment_id)
    if Refund.objects.filter(refund_no=refund_no).exists():
        return _existing(refund_no, payment_id=payment_id, amount=amount), False
    if payment.status != Payment.Status.SUCCEEDED:
        raise PaymentNotRefundable(
            f"a {payment.status} payment cannot be refunded",
            extra={"payment_no": payment.payment_no, "status": payment.status},
        )
    maps = _maps_named(payment, order_ids=order_ids, merchant_id=merchant_id)
    room = refundable_by_map(payment)
    shares = _spread(amount, [(m, room[m.pk]) for m in maps])
    if shares is None:
        raise RefundExceedsPayment(
            "the refunds would exceed what was paid for these orders",
            extra={"payment_no": payment.payment_no, "refundable": sum(max(room[m.pk], 0) for m in maps)},
        )
    refund = Refund.objects.create(
        refund_no=refund_no,
        payment=payment,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        note=note,
        next_check_at=timezone.now() + SUBMIT_SAFETY_NET,
    )
    RefundAllocation.objects.bulk_create(
        RefundAllocation(refund=refund, payment_map=m, amount=share) for m, share in shares
    )
    RefundAttempt.objects.create(refund=refund, number=1, request_no=attempt_request_no(refund, 1))
    RefundEvent.objects.create(
        refund=refund,
        from_status="",
        to_status=Refund.Status.PENDING,
        source=source,
        evidence={"amount": amount, "reason": reason, "orders": {m.order.order_no: share for m, share in shares}},
        actor=actor,
    )
    return refund, True


def _maps_named(payment: Payment, *, order_ids: list[int] | None, merchant_id: int | None) -> list[PaymentOrderMap]:
    """The shares a refund may come out of: those of the named orders (all by default), the
    shares that paid an order before the unwanted ones, each group by order."""
    maps = list(payment.maps.select_related("order").order_by("order_id"))
    if merchant_id is not None:
        maps = [m for m in maps if m.order.merchant_id == merchant_id]
    if order_ids is not None:
        known = {m.order_id for m in maps}
        missing = [pk for pk in order_ids if pk not in known]
        if missing:
            raise NotFound("the payment did not pay this order", extra={"payment_no": payment.payment_no})
        maps = [m for m in maps if m.order_id in order_ids]
    return sorted(maps, key=lambda m: (m.outcome != PaymentOrderMap.Outcome.PAID, m.order_id))


def _spread(amount: int, rooms: list[tuple[PaymentOrderMap, int]]) -> list[tuple[PaymentOrderMap, int]] | None:
    shares: list[tuple[PaymentOrderMap, int]] = []
    left = amount
    for payment_map, room in rooms:
        if left <= 0:
            break
        share = min(left, room)
        if share > 0:
            shares.append((payment_map, share))
            left -= share
    return shares if left == 0 else None


def _existing(refund_no: str, *, payment_id: int, amount: int) -> Refund:
    refund = Refund.objects.get(refund_no=refund_no)
    if refund.payment_id != payment_id or refund.amount != amount:
        raise RefundNoReused("this refund_no was used for another refund", extra={"refund_no": refund_no})
    return refund
