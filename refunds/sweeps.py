"""The refunds app's sweeps (see paycore.sweeps for the mechanics).

- repeat: a payment-code trade revoked after the money moved gets its REVOCATION refund recorded;
  every share of a succeeded payment that paid no order (a duplicate, or money taken
  after paycore gave up) is refunded for exactly what is left of it, under a number derived
  from the payment and the order, so reruns and racing workers never refund twice.
- refund: refunds never submitted (a crash, a broker outage) are submitted; those the channel
  is processing are asked about with back-off; those it refused are tried again under a new
  number until the retry budget is spent, then handed to ops.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q

from paycore.sweeps import Done, Sweep
from payments.models import Payment, PaymentOrderMap
from refunds.models import Refund
from refunds.services import payment_record_revocation, payment_refund_unwanted, refund_advance
from refunds.services.sweep import refund_next_check


def _refund_unwanted(pk: int) -> Done:
    if payment_record_revocation(payment_id=pk) is not None:
        return Done("revocation_recorded")
    refunds = payment_refund_unwanted(payment_id=pk)
    return Done("refunded" if refunds else "nothing_to_refund")


def _advance_refund(pk: int) -> Done:
    refund = refund_advance(refund_id=pk)
    return Done(refund.status.lower(), refund_next_check(refund))


def _paid_with_unwanted_shares(now: datetime) -> Q:
    unwanted = PaymentOrderMap.objects.filter(
        payment=OuterRef("pk"), outcome__in=[PaymentOrderMap.Outcome.DUPLICATE, PaymentOrderMap.Outcome.LATE]
    )
    revoked_after_paying = Q(status=Payment.Status.REVOKED, paid_at__isnull=False) & ~Q(
        Exists(Refund.objects.filter(payment=OuterRef("pk"), reason=Refund.Reason.REVOCATION))
    )
    return Q(Exists(unwanted), status=Payment.Status.SUCCEEDED) | revoked_after_paying


def _unsettled_refunds(now: datetime) -> Q:
    return Q(status__in=[Refund.Status.PENDING, Refund.Status.PROCESSING, Refund.Status.FAILED])


REPEAT = Sweep(name="repeat", model=Payment, due=_paid_with_unwanted_shares, work=_refund_unwanted)
REFUND = Sweep(name="refund", model=Refund, due=_unsettled_refunds, work=_advance_refund)
