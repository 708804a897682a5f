"""The inbox: every channel callback, verified in memory and stored raw with its verification
result in one INSERT before it is answered, then applied by a worker as a hint confirmed by query.

Raw headers and body are encrypted at rest (they carry payer identifiers); ``parsed`` keeps only
a summary without payer data. The first verified copy of a notification is unique per account
and dedupe key (a partial unique index); later copies are still stored, flagged
``is_duplicate``, and never applied.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from inbox.fields import EncryptedBytesField
from paycore.fields import EncryptedJSONField


class InboundNotification(models.Model):
    """Every channel callback, stored raw with its verification result before it is answered."""

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
    headers = EncryptedJSONField(default=dict)
    body = EncryptedBytesField()
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    verification = models.CharField(max_length=20, choices=Verification, default=Verification.PENDING)
    reject_reason = models.CharField(max_length=300, blank=True, default="")
    outcome = models.CharField(max_length=20, choices=Outcome, default=Outcome.PENDING)
    kind = models.CharField(max_length=20, blank=True, default="")
    event_type = models.CharField(max_length=64, blank=True, default="")
    dedupe_key = models.CharField(max_length=200, blank=True, default="")
    # A later copy of a verified notification already stored: kept, never applied, outside the
    # unique index that recognises it.
    is_duplicate = models.BooleanField(default=False)
    parsed = models.JSONField(default=dict, blank=True)  # what was verified, without payer data
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
        constraints = [
            models.UniqueConstraint(
                fields=["channel_account", "dedupe_key"],
                condition=Q(verification="VERIFIED", is_duplicate=False),
                name="inbound_first_verified_uniq",
            ),
        ]
        indexes = [
            # What the inbox sweep claims: verified, not applied, by due time.
            models.Index(
                fields=["next_check_at"],
                name="inbound_unapplied_idx",
                condition=Q(verification="VERIFIED", outcome__in=["PENDING", "FAILED"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} #{self.pk} {self.verification}/{self.outcome}"

    @property
    def body_bytes(self) -> bytes:
        return bytes(self.body)
