"""Merchants, their orders and order items."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from paycore.fields import EncryptedTextField
from paycore.models import StateEvent, SweptModel, TimeStampedModel


class MerchantStatus(models.TextChoices):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


class Merchant(TimeStampedModel):
    Status = MerchantStatus

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status, default=Status.ACTIVE)
    notify_url = models.URLField(max_length=500, blank=True, default="")
    webhook_secret = EncryptedTextField(blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=MerchantStatus.values), name="merchant_status_valid"),
        ]

    def __str__(self) -> str:
        return self.code


class OrderStatus(models.TextChoices):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    PAID = "PAID"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CLOSED = "CLOSED"


class Order(TimeStampedModel, SweptModel):
    Status = OrderStatus

    order_no = models.CharField(max_length=32, unique=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="orders")
    merchant_order_no = models.CharField(max_length=64)
    customer_ref = models.CharField(max_length=64, db_index=True)
    description = models.CharField(max_length=127)
    amount = models.BigIntegerField()  # minor units; = sum of the items
    currency = models.CharField(max_length=3)  # ISO 4217
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING_PAYMENT)
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    shipping_address = EncryptedTextField(blank=True, default="")
    phone = EncryptedTextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "merchant_order_no"], name="order_merchant_order_no_uniq"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="order_amount_gt_0"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="order_currency_iso"),
            models.CheckConstraint(
                condition=Q(status__in=OrderStatus.values),
                name="order_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(paid_at__isnull=True) | ~Q(status="PENDING_PAYMENT"),
                name="order_pending_not_paid",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="order_status_expiry_idx")]

    def __str__(self) -> str:
        return self.order_no


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=127)
    unit_price = models.BigIntegerField()  # minor units
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="orderitem_unit_price_gte_0"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orderitem_quantity_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.name}"

    @property
    def line_amount(self) -> int:
        return self.unit_price * self.quantity


class OrderEvent(StateEvent):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
