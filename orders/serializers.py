"""Input and output shapes for orders; no business rules here."""

from __future__ import annotations

from rest_framework import serializers

from orders.models import Order
from paycore.serializers import (
    CurrencyField,
    InputSerializer,
    MoneyAmountField,
    OutputModelSerializer,
    StrictCharField,
    StrictIntegerField,
)

_NUMBER = r"^[0-9A-Za-z_\-]+$"


class OrderItemInput(InputSerializer):
    name = StrictCharField(max_length=127)
    unit_price = MoneyAmountField(min_value=0)
    quantity = StrictIntegerField(min_value=1, max_value=10_000)


class OrderCreateInput(InputSerializer):
    merchant = StrictCharField(max_length=32, required=False)
    merchant_order_no = serializers.RegexField(_NUMBER, max_length=64)
    customer_ref = StrictCharField(max_length=64)
    description = StrictCharField(max_length=127)
    currency = CurrencyField()
    items = OrderItemInput(many=True, allow_empty=False, max_length=100)
    expires_at = serializers.DateTimeField(required=False)
    shipping_address = StrictCharField(max_length=500, required=False, allow_blank=True, default="")
    phone = serializers.RegexField(r"^\+?[0-9 \-]{3,32}$", required=False, allow_blank=True, default="")


class OrderListQuery(InputSerializer):
    customer_ref = serializers.CharField(max_length=64, required=False, help_text="Only this customer's orders.")
    status = serializers.ChoiceField(
        choices=Order.Status.values, required=False, help_text="Only orders in this status."
    )


class OrderItemOutput(serializers.Serializer):
    name = serializers.CharField()
    unit_price = serializers.IntegerField()
    quantity = serializers.IntegerField()


class OrderOutput(OutputModelSerializer):
    merchant = serializers.CharField(source="merchant.code")
    items = OrderItemOutput(source="item_list", many=True)

    class Meta:
        model = Order
        fields = [
            "order_no",
            "merchant",
            "merchant_order_no",
            "customer_ref",
            "description",
            "amount",
            "currency",
            "status",
            "expires_at",
            "paid_at",
            "created_at",
            "items",
        ]
        read_only_fields = fields
