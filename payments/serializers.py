"""Input and output shapes for payments; no business rules here."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from channels.registry import CHANNEL_CODES
from paycore.serializers import InputSerializer, OutputModelSerializer, StrictCharField
from payments.models import Payment


class PaymentCreateInput(InputSerializer):
    order_nos = serializers.ListField(child=StrictCharField(max_length=32), allow_empty=False, max_length=50)
    customer_ref = StrictCharField(max_length=64)
    channel = serializers.ChoiceField(choices=CHANNEL_CODES)
    # Payment codes have their own endpoint (POST /payments/paycode): they are charged, not prepaid.
    method = serializers.ChoiceField(choices=[m for m in Payment.Method.values if m != Payment.Method.PAYCODE])
    payer_id = StrictCharField(max_length=128, required=False, default="")
    client_ip = serializers.IPAddressField(required=False, default=None)
    return_url = serializers.URLField(max_length=500, required=False, default="")


class PaycodeCreateInput(InputSerializer):
    order_nos = serializers.ListField(child=StrictCharField(max_length=32), allow_empty=False, max_length=50)
    customer_ref = StrictCharField(max_length=64)
    auth_code = serializers.RegexField(r"^[0-9]{16,24}$", help_text="The payer's payment code, as scanned.")
    channel = serializers.ChoiceField(
        choices=["wechat", "alipay"], required=False, help_text="Default: told by the code itself."
    )
    store_id = StrictCharField(max_length=64, required=False, allow_blank=True, default="")
    device_id = StrictCharField(max_length=64, required=False, allow_blank=True, default="")
    operator_id = StrictCharField(max_length=64, required=False, allow_blank=True, default="")
    client_ip = serializers.IPAddressField(required=False, default=None)
    wait_seconds = serializers.IntegerField(
        min_value=0,
        max_value=5,
        required=False,
        default=0,
        help_text="Hold the answer up to this long while the payer confirms (a bounded long-poll).",
    )


class PaymentListQuery(InputSerializer):
    order_no = serializers.CharField(max_length=32, required=False, help_text="Only payments of this order.")
    customer_ref = serializers.CharField(max_length=64, required=False, help_text="Only payments of this customer.")


class PaymentClientReportInput(InputSerializer):
    result = serializers.ChoiceField(choices=["success", "cancel", "fail", "unknown"])
    detail = serializers.DictField(required=False, default=dict)


class PaymentCloseInput(InputSerializer):
    reason = StrictCharField(max_length=100, required=False, default="requested")


class PaymentOrderOutput(serializers.Serializer):
    order_no = serializers.CharField(source="order.order_no")
    amount = serializers.IntegerField()
    is_current = serializers.BooleanField()
    outcome = serializers.CharField(help_text="Once paid: PAID, DUPLICATE or LATE (the last two are refunded).")


class PaymentOutput(OutputModelSerializer):
    status_url = serializers.SerializerMethodField(help_text="Where to ask for this payment's status.")
    amount = serializers.IntegerField(
        source="shown_amount", help_text="For a merchant key, the part of the payment that pays its own orders."
    )
    orders = PaymentOrderOutput(source="shown_maps", many=True)
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
            "status_url",
            "failure_code",
            "store_id",
            "device_id",
            "operator_id",
        ]
        read_only_fields = fields

    def get_status_url(self, payment: Payment) -> str:
        return reverse("v1:payment-detail", kwargs={"payment_no": payment.payment_no})


class CashierInput(InputSerializer):
    order_nos = serializers.ListField(child=StrictCharField(max_length=32), allow_empty=False, max_length=50)
    customer_ref = StrictCharField(max_length=64)


class MethodOfferOutput(serializers.Serializer):
    channel = serializers.CharField()
    method = serializers.CharField()
    currency = serializers.CharField()
    amount = serializers.IntegerField()


class CashierOutput(serializers.Serializer):
    methods = MethodOfferOutput(many=True)
