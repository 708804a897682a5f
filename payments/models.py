"""Payments, their maps to orders, their append-only events and the raw callback inbox."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from paycore.fields import EncryptedTextField
from paycore.models import StateEvent, SweptModel, TimeStampedModel


class PaymentStatus(models.TextChoices):
    CREATED = "CREATED"
    PENDING = "PENDING"
    CLIENT_REPORTED = "CLIENT_REPORTED"
    USER_PAYING = "USER_PAYING"
    SUCCEEDED = "SUCCEEDED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"
    REVOKED = "REVOKED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"  # the sweeps could not settle it: a person decides


class Payment(TimeStampedModel, SweptModel):
    Status = PaymentStatus

    class Method(models.TextChoices):
        APP = "app"
        JSAPI = "jsapi"
        NATIVE = "native"
        H5 = "h5"
        PAGE = "page"
        PAYCODE = "paycode"
        POINTS = "points"

    payment_no = models.CharField(max_length=32, unique=True)
    channel = models.CharField(max_length=20)
    method = models.CharField(max_length=20, choices=Method)
    channel_account = models.ForeignKey("channels.ChannelAccount", on_delete=models.PROTECT)
    customer_ref = models.CharField(max_length=64, db_index=True)
    amount = models.BigIntegerField()  # minor units
    currency = models.CharField(max_length=3)  # ISO 4217
    status = models.CharField(max_length=20, choices=Status, default=Status.CREATED)
    channel_trade_no = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 NULL: unique when set
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    prepay_data = models.JSONField(default=dict, blank=True)  # what the app's SDK needs
    payer_id = EncryptedTextField(blank=True, default="")  # the payer's openid / points binding: PII
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    return_url = models.URLField(max_length=500, blank=True, default="")
    # Payment code at a shop counter: where it was scanned, and how far paycore follows it.
    store_id = models.CharField(max_length=64, blank=True, default="")
    device_id = models.CharField(max_length=64, blank=True, default="")
    operator_id = models.CharField(max_length=64, blank=True, default="")
    charge_deadline = models.DateTimeField(null=True, blank=True)  # polling ends, revocation begins
    revoke_attempts = models.PositiveIntegerField(default=0)
    failure_code = models.CharField(max_length=64, blank=True, default="")  # the channel's, on FAILED
    # Closed here without the channel's confirmation (e.g. an Alipay order string never opened
    # answers "trade does not exist" yet stays payable until its time_expire): the success
    # sweep keeps querying it until then, so money taken late is recorded and refunded.
    watch_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_gt_0"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="payment_currency_iso"),
            models.CheckConstraint(
                condition=Q(status__in=PaymentStatus.values),
                name="payment_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="SUCCEEDED") | Q(paid_at__isnull=False),
                name="payment_succeeded_has_paid_at",
            ),
            models.CheckConstraint(condition=Q(payment_no__regex=r"^[0-9A-Z]{6,32}$"), name="payment_no_charset"),
            models.UniqueConstraint(
                fields=["channel_trade_no"],
                condition=Q(channel_trade_no__isnull=False),
                name="payment_channel_trade_no_uniq",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="payment_status_expiry_idx")]

    def __str__(self) -> str:
        return self.payment_no


class MapOutcome(models.TextChoices):
    """What a payment's success meant for one of its orders."""

    PAID = "PAID"  # it paid the order
    DUPLICATE = "DUPLICATE"  # the order was already paid by another payment: refunded
    LATE = "LATE"  # paycore had given the payment or the order up: recorded, then refunded


class PaymentOrderMap(models.Model):
    """Which orders a payment pays, and how much of it goes to each. At most one current map
    per order: the payment the order is waiting on (or was paid by)."""

    Outcome = MapOutcome

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="maps")
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="payment_maps")
    amount = models.BigIntegerField()
    is_current = models.BooleanField(default=True)
    outcome = models.CharField(max_length=10, choices=MapOutcome, blank=True, default="")  # set on success
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order"], condition=Q(is_current=True), name="paymentordermap_one_current"),
            models.UniqueConstraint(fields=["payment", "order"], name="paymentordermap_payment_order_uniq"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="paymentordermap_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(outcome__in=["", *MapOutcome.values]), name="paymentordermap_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} -> {self.order_id}{' (current)' if self.is_current else ''}"


class PaymentEvent(StateEvent):
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="events")
