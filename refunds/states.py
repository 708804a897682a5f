"""The refund state machine. A refund the channel refused (FAILED) is tried again under a new
request number (back to PENDING) until its retry budget is spent; then a person decides
(NEEDS_ATTENTION), and may retry it again or resolve it with a note."""

from paycore.statemachine import TransitionTable
from refunds.models import Refund, RefundEvent

S = Refund.Status

REFUND_TRANSITIONS = TransitionTable(
    "refund",
    {
        S.PENDING: {S.PROCESSING, S.SUCCEEDED, S.FAILED, S.NEEDS_ATTENTION},
        S.PROCESSING: {S.SUCCEEDED, S.FAILED, S.NEEDS_ATTENTION},
        S.FAILED: {S.PENDING, S.NEEDS_ATTENTION},
        S.NEEDS_ATTENTION: {S.PENDING, S.PROCESSING, S.SUCCEEDED, S.FAILED},
        S.SUCCEEDED: set(),
    },
    event=RefundEvent,
)
refund_move = REFUND_TRANSITIONS.move

# Refunds that count against what may still be refunded: all but the FAILED ones. A FAILED
# refund gives its room back, so a retry checks the room again under the payment lock.
COUNTED_STATES = frozenset({S.PENDING, S.PROCESSING, S.SUCCEEDED, S.NEEDS_ATTENTION})
