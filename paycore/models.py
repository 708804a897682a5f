"""Shared models: the base classes of every app (timestamps, append-only state events) and the
kernel's own rows (API clients, idempotency records, the outbox)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models import Q


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class SweptModel(models.Model):
    """Rows a sweep follows (paycore.sweeps): when to look next, which is also the lease a run
    holds while it works the row, and the failures recorded on the row itself."""

    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    check_failures = models.PositiveIntegerField(default=0)
    last_check_error = models.TextField(blank=True, default="")

    class Meta:
        abstract = True


class EventSource(models.TextChoices):
    API = "api"
    CLIENT_SYNC = "client-sync"
    CHANNEL_NOTIFY = "channel-notify"
    CHANNEL_QUERY = "channel-query"
    SCHEDULER = "scheduler"
    OPS = "ops"


class AppendOnlyModel(models.Model):
    """Rows that record history: inserted once, never updated."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)


class StateEvent(AppendOnlyModel):
    """One move of a state machine, written in the transaction that makes it."""

    from_status = models.CharField(max_length=20)
    to_status = models.CharField(max_length=20)
    source = models.CharField(max_length=20, choices=EventSource)
    evidence = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status} ({self.source})"


class Scope(models.TextChoices):
    ORDERS_READ = "orders:read"
    ORDERS_WRITE = "orders:write"
    PAYMENTS_READ = "payments:read"
    PAYMENTS_WRITE = "payments:write"
    REFUNDS_READ = "refunds:read"
    REFUNDS_WRITE = "refunds:write"
    EVENTS_READ = "events:read"  # list one's webhook events (outbox)
    EVENTS_WRITE = "events:write"  # ask for them to be sent again


class ApiClient(TimeStampedModel):
    """A caller of the REST API. The key is shown once; only its SHA-256 is stored.

    ``merchant`` set: the client sees only that merchant's orders; empty: a platform client (the
    marketplace backend) that may act for every merchant.
    """

    name = models.CharField(max_length=100, unique=True)
    merchant = models.ForeignKey("orders.Merchant", null=True, blank=True, on_delete=models.PROTECT)
    key_prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(key_hash=""), name="apiclient_key_hash_set")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix})"

    is_authenticated = True  # DRF uses the client as request.user

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def sees_merchant(self, merchant_id: int) -> bool:
        """Whether rows of this merchant are visible to the client (the rule selectors filter by)."""
        return not self.merchant_id or merchant_id == self.merchant_id


IDEMPOTENCY_KEY_CONSTRAINT = "idempotency_client_key_uniq"  # unique (client, key): the key's lock


class IdempotencyRecord(models.Model):
    """One POST per (client, Idempotency-Key). The unique row is the lock: a second concurrent
    request with the same key cannot insert it and is told to retry."""

    class State(models.TextChoices):
        IN_PROGRESS = "IN_PROGRESS"
        COMPLETED = "COMPLETED"

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name=IDEMPOTENCY_KEY_CONSTRAINT),
            models.CheckConstraint(
                condition=Q(state="IN_PROGRESS") | Q(response_status__isnull=False),
                name="idempotency_completed_has_response",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class DeliveryStatus(models.TextChoices):
    """Where an event stands with its merchant's webhook endpoint."""

    PENDING = "PENDING"  # to be POSTed (now, or at next_attempt_at)
    DELIVERED = "DELIVERED"  # the endpoint answered 2xx
    FAILED = "FAILED"  # the retry schedule ran out: listed for ops, who may resend it
    NOT_SENT = "NOT_SENT"  # nothing to send it to: no merchant, or no notify URL


class OutboxEvent(models.Model):
    """A state change others must hear about, written in the same transaction as the change.

    One row per merchant concerned (a payment shared by several merchants gives each its own
    event, carrying only its own orders), with a unique ``event_id`` receivers dedupe by.
    ``payload`` is exactly what the merchant is sent; ``context`` stays inside paycore (who
    acted, the evidence) and is never sent. The columns below ``context`` track the delivery of
    the row to the merchant's webhook; consumers inside paycore follow the stream by ``txid``
    with cursors of their own (outbox.consumers).
    """

    DeliveryStatus = DeliveryStatus

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    topic = models.CharField(max_length=100)
    key = models.CharField(max_length=100)
    merchant = models.ForeignKey(
        "orders.Merchant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="outbox_events",
        db_index=False,  # outbox_merchant_stream_idx (merchant, id) serves it
    )
    payload = models.JSONField(default=dict)
    context = models.JSONField(default=dict, blank=True)
    # The id of the writing transaction (PostgreSQL's pg_current_xact_id(); 0 elsewhere): a
    # consumer reads only below the oldest transaction still running, so it never passes an
    # event whose transaction commits later with a smaller id.
    txid = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivery_status = models.CharField(max_length=10, choices=DeliveryStatus, default=DeliveryStatus.PENDING)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # in the current round (a resend starts a new one)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    requeued_at = models.DateTimeField(null=True, blank=True)
    requeued_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(delivery_status="PENDING"), name="outbox_pending_idx"),
            models.Index(
                fields=["merchant", "id"], condition=Q(delivery_status="PENDING"), name="outbox_merchant_pending_idx"
            ),
            models.Index(fields=["merchant", "id"], name="outbox_merchant_stream_idx"),
            models.Index(fields=["txid", "id"], name="outbox_stream_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(delivery_status__in=DeliveryStatus.values), name="outbox_status_valid"),
            models.CheckConstraint(
                condition=~Q(delivery_status="DELIVERED") | Q(delivered_at__isnull=False),
                name="outbox_delivered_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.key}"
