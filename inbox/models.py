"""The inbox: every channel callback, stored raw with its verification result before anything
else is done with it, then applied by a worker as a hint confirmed by query."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class InboundNotification(models.Model):
    """Every channel callback, stored raw before anything else is done with it."""

    class Verification(models.TextChoices):
        PENDING = "PENDING"
        VERIFIED = "VERIFIED"
        REJECTED = "REJECTED"

    class Outcome(models.TextChoices):
        PENDING = "PENDING"  # verified, not applied yet (the inbox sweep retries these)
        APPLIED = "APPLIED"
        DUPLICATE = "DUPLICATE"
        IGNORED = "IGNORED"  # verified but nothing to do (e.g. unknown payment, informational)
        FAILED = "FAILED"  # applying raised; retried by the inbox sweep with back-off
        NEEDS_ATTENTION = "NEEDS_ATTENTION"  # failed past its retry budget: retired to ops
        REJECTED = "REJECTED"  # failed verification: changes nothing

    channel = models.CharField(max_length=20)
    channel_account = models.ForeignKey("channels.ChannelAccount", null=True, blank=True, on_delete=models.PROTECT)
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    verification = models.CharField(max_length=20, choices=Verification, default=Verification.PENDING)
    reject_reason = models.CharField(max_length=300, blank=True, default="")
    outcome = models.CharField(max_length=20, choices=Outcome, default=Outcome.PENDING)
    kind = models.CharField(max_length=20, blank=True, default="")
    event_type = models.CharField(max_length=64, blank=True, default="")
    dedupe_key = models.CharField(max_length=200, blank=True, default="", db_index=True)
    parsed = models.JSONField(default=dict, blank=True)
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    refund = models.ForeignKey(
        "refunds.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    attempts = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True)  # the inbox sweep's due time and lease
    processed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(
                fields=["received_at"],
                name="inbound_unapplied_idx",
                condition=Q(verification="VERIFIED", outcome__in=["PENDING", "FAILED"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} #{self.pk} {self.verification}/{self.outcome}"

    @property
    def body_bytes(self) -> bytes:
        return bytes(self.body)
