"""Input and output shapes for refunds; no business rules here."""

from __future__ import annotations

from rest_framework import serializers

from paycore.serializers import MoneyAmountField, StrictCharField
from refunds.models import Refund

# DUPLICATE_PAYMENT and REVOCATION refunds are paycore's own; clients ask for the others.
_CLIENT_REASONS = [Refund.Reason.CUSTOMER_REQUEST, Refund.Reason.RETURN, Refund.Reason.CANCELLATION]


class RefundCreateInput(serializers.Serializer):
    payment_no = StrictCharField(max_length=32)
    refund_no = serializers.RegexField(r"^[0-9A-Za-z_\-]+$", max_length=64)
    amount = MoneyAmountField()
    reason = serializers.ChoiceField(choices=_CLIENT_REASONS, required=False, default=Refund.Reason.CUSTOMER_REQUEST)
    note = StrictCharField(max_length=80, required=False, allow_blank=True, default="")


class RefundOutput(serializers.ModelSerializer):
    payment_no = serializers.CharField(source="payment.payment_no")

    class Meta:
        model = Refund
        fields = [
            "refund_no",
            "payment_no",
            "amount",
            "currency",
            "reason",
            "note",
            "status",
            "channel_refund_no",
            "succeeded_at",
            "created_at",
        ]
        read_only_fields = fields
