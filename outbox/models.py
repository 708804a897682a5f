"""What the delivery of events leaves behind: webhook attempts, secrets being rotated out, the
cursor of each consumer inside paycore, and the risk rules' decisions."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from orders.models import Merchant
from paycore.fields import EncryptedTextField
from paycore.models import OutboxEvent, SweptModel


class WebhookDelivery(OutboxEvent):
    """The outbox seen as deliveries to merchants (the admin's list for ops)."""

    class Meta:
        proxy = True
        verbose_name_plural = "webhook deliveries"


class WebhookAttempt(models.Model):
    """One POST of an event to its merchant's notify URL, whatever came of it."""

    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="webhook_attempts")
    number = models.PositiveIntegerField()  # 1, 2, ... over the event's whole life (resends included)
    url = models.CharField(max_length=500)
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # None: no answer
    latency_ms = models.PositiveIntegerField()
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    delivered = models.BooleanField(default=False)

    class Meta:
        ordering = ["event", "number"]
        constraints = [
            models.UniqueConstraint(fields=["event", "number"], name="webhookattempt_event_number_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} #{self.number} -> {self.status_code or self.error[:40]}"


class WebhookSecretOverlap(models.Model):
    """A merchant's previous webhook secret, still used to sign (besides the current one) until
    ``valid_until``, so the merchant can switch its receiver over without dropping an event."""

    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="webhook_secret_overlap")
    previous_secret = EncryptedTextField()
    valid_until = models.DateTimeField()
    rotated_at = models.DateTimeField(auto_now=True)
    rotated_by = models.CharField(max_length=150, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.merchant_id} until {self.valid_until:%Y-%m-%d %H:%M}"


class ConsumerCursor(SweptModel):
    """How far one consumer inside paycore has read the event stream: the last event it handled,
    by (transaction id, event id). Each consumer has its own row, so a slow or failing one holds
    back only itself; the row is also its lease and failure record (paycore.sweeps)."""

    name = models.CharField(max_length=64, unique=True)
    last_txid = models.BigIntegerField(default=0)
    last_event_pk = models.BigIntegerField(default=0)
    handled = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at ({self.last_txid}, {self.last_event_pk})"


class RiskOutcome(models.TextChoices):
    ALLOW = "ALLOW"
    SUSPEND = "SUSPEND"
    ALREADY_SUSPENDED = "ALREADY_SUSPENDED"  # figures kept; the merchant was suspended before


class RiskDecision(models.Model):
    """Every decision of a risk rule, with the figures it decided on, suspend or not."""

    Outcome = RiskOutcome

    rule = models.CharField(max_length=32)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="risk_decisions")
    event = models.ForeignKey(OutboxEvent, on_delete=models.PROTECT, related_name="risk_decisions")
    outcome = models.CharField(max_length=20, choices=RiskOutcome)
    reasons = models.JSONField(default=list, blank=True)  # which thresholds were passed
    figures = models.JSONField(default=dict)
    applied_at = models.DateTimeField(null=True, blank=True)  # the suspension was made
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "event"], name="riskdecision_rule_event_uniq"),
            models.CheckConstraint(condition=Q(outcome__in=RiskOutcome.values), name="riskdecision_outcome_valid"),
        ]
        indexes = [models.Index(fields=["merchant", "-created_at"], name="riskdecision_merchant_idx")]

    def __str__(self) -> str:
        return f"{self.rule} {self.outcome} {self.merchant_id}"


class SuspendedMerchant(Merchant):
    """Merchants as ops review suspensions: the evidence, and the action that lifts one."""

    class Meta:
        proxy = True
