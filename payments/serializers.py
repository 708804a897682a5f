"""Input and output shapes for payments; no business rules here."""

from __future__ import annotations

from rest_framework import serializers

from channels.registry import CHANNEL_CODES
from paycore.serializers import StrictCharField
from payments.models import Payment


class PaymentCreateInput(serializers.Serializer):
    order_nos = serializers.ListField(child=StrictCharField(max_length=32), allow_empty=False, max_length=50)
    customer_ref = StrictCharField(max_length=64)
    channel = serializers.ChoiceField(choices=CHANNEL_CODES)
    method = serializers.ChoiceField(choices=Payment.Method.values)
    payer_id = StrictCharField(max_length=128, required=False, default="")
    client_ip = serializers.IPAddressField(required=False, default=None)
    return_url = serializers.URLField(max_length=500, required=False, default="")
    auth_code = serializers.RegexField(r"^[0-9]{16,24}$", required=False, default="")

    def validate(self, attrs: dict) -> dict:
        if attrs["method"] == Payment.Method.PAYCODE and not attrs["auth_code"]:
            raise serializers.ValidationError({"auth_code": "required for a payment-code payment"}, code="required")
        return attrs


class PaymentListQuery(serializers.Serializer):
    order_no = serializers.CharField(max_length=32, required=False, help_text="Only payments of this order.")
    customer_ref = serializers.CharField(max_length=64, required=False, help_text="Only payments of this customer.")


class PaymentClientReportInput(serializers.Serializer):
    result = serializers.ChoiceField(choices=["success", "cancel", "fail", "unknown"])
    detail = serializers.DictField(required=False, default=dict)


class PaymentCloseInput(serializers.Serializer):
    reason = StrictCharField(max_length=100, required=False, default="requested")


class PaymentOrderOutput(serializers.Serializer):
    order_no = serializers.CharField(source="order.order_no")
    amount = serializers.IntegerField()
    is_current = serializers.BooleanField()
    outcome = serializers.CharField(help_text="Once paid: PAID, DUPLICATE or LATE (the last two are refunded).")


class PaymentOutput(serializers.ModelSerializer):
    amount = serializers.IntegerField(
        source="shown_amount", help_text="For a merchant key, the part of the payment that pays its own orders."
    )
    orders = PaymentOrderOutput(source="maps", many=True)
    prepay = serializers.JSONField(source="prepay_data")

    class Meta:
        model = Payment
        fields = [
            "payment_no",
            "channel",
            "method",
            "status",
            "amount",
            "currency",
            "channel_trade_no",
            "customer_ref",
            "expires_at",
            "paid_at",
            "created_at",
            "prepay",
            "orders",
        ]
        read_only_fields = fields


class CashierInput(serializers.Serializer):
    order_nos = serializers.ListField(child=StrictCharField(max_length=32), allow_empty=False, max_length=50)
    customer_ref = StrictCharField(max_length=64)


class MethodOfferOutput(serializers.Serializer):
    channel = serializers.CharField()
    method = serializers.CharField()
    currency = serializers.CharField()
    amount = serializers.IntegerField()


class CashierOutput(serializers.Serializer):
    methods = MethodOfferOutput(many=True)
