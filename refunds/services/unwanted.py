"""The repeat sweep's work: refund every share of a succeeded payment that paid no order (the
order was already paid by another payment, or paycore had given the payment or order up)."""

from __future__ import annotations

from paycore.models import EventSource
from payments.models import Payment, PaymentOrderMap
from refunds.models import Refund
from refunds.services.request import OWN_NUMBER_PREFIX, refund_request, refundable_by_map

_REASONS = {
    PaymentOrderMap.Outcome.DUPLICATE: ("D", Refund.Reason.DUPLICATE_PAYMENT),
    PaymentOrderMap.Outcome.LATE: ("L", Refund.Reason.LATE_PAYMENT),
}


def unwanted_refund_no(payment: Payment, payment_map: PaymentOrderMap) -> str:
    """Derived from the payment and the order, so reruns and racing sweeps ask for the same
    refund, which exists at most once."""
    letter, _ = _REASONS[PaymentOrderMap.Outcome(payment_map.outcome)]
    return f"{OWN_NUMBER_PREFIX}{letter}{payment.payment_no}{payment_map.order.order_no}"


def payment_refund_unwanted(*, payment_id: int) -> list[Refund]:
    """Ask for the refund of each unwanted share, for exactly what is left of it."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != Payment.Status.SUCCEEDED:
        return []
    refunds = []
    unwanted = payment.maps.select_related("order").filter(outcome__in=list(_REASONS)).order_by("order_id")
    room = refundable_by_map(payment)
    for payment_map in unwanted:
        refund_no = unwanted_refund_no(payment, payment_map)
        existing = Refund.objects.filter(refund_no=refund_no).first()
        if existing is not None:
            refunds.append(existing)
            continue
        if room.get(payment_map.pk, 0) <= 0:
            continue  # refunded already by other means
        _, reason = _REASONS[PaymentOrderMap.Outcome(payment_map.outcome)]
        refund, _ = refund_request(
            payment_id=payment.pk,
            refund_no=refund_no,
            amount=room[payment_map.pk],
            reason=reason,
            note=f"{payment_map.outcome.lower()} payment for {payment_map.order.order_no}",
            order_ids=[payment_map.order_id],
            source=EventSource.SCHEDULER,
        )
        refunds.append(refund)
    return refunds
