"""The refund state machine: FAILED is retried with back-off; past the retry budget the refund
needs ops (NEEDS_ATTENTION), who can retry it again."""

from paycore.statemachine import TransitionTable
from refunds.models import Refund, RefundEvent

S = Refund.Status

REFUND_TRANSITIONS = TransitionTable(
    "refund",
    {
        S.PENDING: {S.PROCESSING, S.SUCCEEDED, S.FAILED},
        S.PROCESSING: {S.SUCCEEDED, S.FAILED, S.NEEDS_ATTENTION},
        S.FAILED: {S.PROCESSING, S.SUCCEEDED, S.NEEDS_ATTENTION},
        S.NEEDS_ATTENTION: {S.PROCESSING, S.SUCCEEDED},
        S.SUCCEEDED: set(),
    },
    event=RefundEvent,
)
refund_move = REFUND_TRANSITIONS.move

# Refunds that count against the payment's refundable amount.
COUNTED_STATES = frozenset({S.PENDING, S.PROCESSING, S.SUCCEEDED, S.NEEDS_ATTENTION})
