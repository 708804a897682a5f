"""The refund application service: every refund state change goes through here."""

from refunds.services.apply import refund_apply_state, refund_submit, refund_sync_from_channel
from refunds.services.ops import refund_resolve, refund_retry
from refunds.services.request import refund_request, refundable_by_map
from refunds.services.revocation import payment_record_revocation
from refunds.services.sweep import refund_advance
from refunds.services.unwanted import payment_refund_unwanted

__all__ = [
    "payment_record_revocation",
    "payment_refund_unwanted",
    "refund_advance",
    "refund_apply_state",
    "refund_request",
    "refund_resolve",
    "refund_retry",
    "refund_submit",
    "refund_sync_from_channel",
    "refundable_by_map",
]
