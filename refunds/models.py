"""Refunds and their append-only events."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from paycore.models import StateEvent, TimeStampedModel


class RefundStatus(models.TextChoices):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


class Refund(TimeStampedModel):
    Status = RefundStatus

    class Reason(models.TextChoices):
        CUSTOMER_REQUEST = "CUSTOMER_REQUEST"
        RETURN = "RETURN"
        CANCELLATION = "CANCELLATION"
        DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"
        REVOCATION = "REVOCATION"

    refund_no = models.CharField(max_length=64, unique=True)
    payment = models.ForeignKey("payments.Payment", on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=30, choices=Reason, default=Reason.CUSTOMER_REQUEST)
    note = models.CharField(max_length=80, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING)
    channel_refund_no = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 NULL: unique when set
    succeeded_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    fail_code = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_gt_0"),
            models.CheckConstraint(condition=Q(refund_no__regex=r"^[0-9A-Za-z_-]{1,64}$"), name="refund_no_charset"),
            models.CheckConstraint(
                condition=Q(status__in=RefundStatus.values),
                name="refund_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="SUCCEEDED") | Q(succeeded_at__isnull=False), name="refund_succeeded_has_time"
            ),
            models.UniqueConstraint(
                fields=["channel_refund_no"],
                condition=Q(channel_refund_no__isnull=False),
                name="refund_channel_refund_no_uniq",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="refund_status_next_idx")]

    def __str__(self) -> str:
        return self.refund_no


class RefundEvent(StateEvent):
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="events")
