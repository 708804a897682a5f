"""Input and output shapes for refunds; no business rules here."""

from __future__ import annotations

from rest_framework import serializers

from paycore.serializers import InputSerializer, MoneyAmountField, OutputModelSerializer, StrictCharField
from refunds.models import Refund

# DUPLICATE_PAYMENT and REVOCATION refunds are paycore's own; clients ask for the others.
_CLIENT_REASONS = [Refund.Reason.CUSTOMER_REQUEST, Refund.Reason.RETURN, Refund.Reason.CANCELLATION]


class RefundCreateInput(InputSerializer):
    payment_no = StrictCharField(max_length=32)
    # Numbers starting with "PC-" are paycore's own (its duplicate refunds, retry attempts).
    refund_no = serializers.RegexField(r"^(?!PC-)[0-9A-Za-z_\-]+$", min_length=1, max_length=64)
    amount = MoneyAmountField()
    reason = serializers.ChoiceField(choices=_CLIENT_REASONS, required=False, default=Refund.Reason.CUSTOMER_REQUEST)
    note = StrictCharField(max_length=80, required=False, allow_blank=True, default="")
    order_nos = serializers.ListField(
        child=StrictCharField(max_length=32),
        required=False,
        default=list,
        max_length=50,
        help_text="The orders this refund is for (default: every order of the payment the key may see); "
        "it is spread over their shares in this order and capped by what is left of them.",
    )


class RefundOrderOutput(serializers.Serializer):
    order_no = serializers.CharField(source="payment_map.order.order_no")
    amount = serializers.IntegerField()


class RefundOutput(OutputModelSerializer):
    payment_no = serializers.CharField(source="payment.payment_no")
    amount = serializers.IntegerField(
        source="shown_amount", help_text="For a merchant key, what this refund gives back for its own orders."
    )
    orders = RefundOrderOutput(source="allocations", many=True)

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
            "orders",
        ]
        read_only_fields = fields
