"""Refunds, the orders they refund, the attempts made at the channel, and their events."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from paycore.models import StateEvent, SweptModel, TimeStampedModel


class RefundStatus(models.TextChoices):
    PENDING = "PENDING"  # accepted, not (yet) taken by the channel
    PROCESSING = "PROCESSING"  # the channel took it
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # the channel refused the last attempt; retried under a new number, or final
    NEEDS_ATTENTION = "NEEDS_ATTENTION"  # past the retry budget, or abnormal at the channel


class RefundReason(models.TextChoices):
    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"
    RETURN = "RETURN"
    CANCELLATION = "CANCELLATION"
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"  # an order paid twice: the extra payment's share
    LATE_PAYMENT = "LATE_PAYMENT"  # money taken after paycore gave the payment or order up
    REVOCATION = "REVOCATION"  # a payment-code trade reversed after the money moved


class Refund(TimeStampedModel, SweptModel):
    Status = RefundStatus
    Reason = RefundReason

    refund_no = models.CharField(max_length=64, unique=True)
    payment = models.ForeignKey("payments.Payment", on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=30, choices=Reason, default=Reason.CUSTOMER_REQUEST)
    note = models.CharField(max_length=80, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING)
    channel_refund_no = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 NULL: unique when set
    succeeded_at = models.DateTimeField(null=True, blank=True)
    fail_code = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_gt_0"),
            models.CheckConstraint(condition=Q(refund_no__regex=r"^[0-9A-Za-z_-]{1,64}$"), name="refund_no_charset"),
            models.CheckConstraint(condition=Q(status__in=RefundStatus.values), name="refund_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="SUCCEEDED") | Q(succeeded_at__isnull=False), name="refund_succeeded_has_time"
            ),
            models.UniqueConstraint(
                fields=["channel_refund_no"],
                condition=Q(channel_refund_no__isnull=False),
                name="refund_channel_refund_no_uniq",
            ),
        ]

    def __str__(self) -> str:
        return self.refund_no


class RefundAllocation(models.Model):
    """How much of a refund comes out of which payment<->order map. Refunds name the orders they
    refund: each map caps what may be refunded of it, and only that order's status follows."""

    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="allocations")
    payment_map = models.ForeignKey(
        "payments.PaymentOrderMap", on_delete=models.PROTECT, related_name="refund_allocations"
    )
    amount = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["refund", "payment_map"], name="refundallocation_refund_map_uniq"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refundallocation_amount_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.refund_id}: {self.amount} of map {self.payment_map_id}"


class RefundAttempt(models.Model):
    """One try at the channel. A channel that refused a refund number answers every later call
    with that refusal, so a retry is a new attempt under a new request number."""

    class Status(models.TextChoices):
        SUBMITTED = "SUBMITTED"  # sent (or about to be); the channel's answer not yet final
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"

    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    request_no = models.CharField(max_length=64, unique=True)  # out_refund_no / out_request_no sent
    channel_refund_no = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status, default=Status.SUBMITTED)
    fail_code = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["refund", "number"]
        constraints = [
            models.UniqueConstraint(fields=["refund", "number"], name="refundattempt_refund_number_uniq"),
            models.CheckConstraint(condition=Q(number__gte=1), name="refundattempt_number_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.refund_id} #{self.number} ({self.request_no})"


class RefundEvent(StateEvent):
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="events")
