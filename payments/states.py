"""The payment state machine (design.md "State machines").

Only a verified channel notification or an active query may lead to SUCCEEDED, and it may do so
from any non-terminal state and from CLOSED / FAILED: if the channel took the money, paycore
records it (and the duplicate sweep refunds it if unwanted).
"""

from paycore.statemachine import TransitionTable
from payments.models import Payment, PaymentEvent

S = Payment.Status

PAYMENT_TRANSITIONS = TransitionTable(
    "payment",
    {
        S.CREATED: {S.PENDING, S.USER_PAYING, S.SUCCEEDED, S.CLOSED, S.FAILED, S.NEEDS_ATTENTION},
        S.PENDING: {S.CLIENT_REPORTED, S.SUCCEEDED, S.CLOSED, S.FAILED, S.NEEDS_ATTENTION},
        # The app's report is a hint: when the channel keeps saying unpaid, it is withdrawn.
        S.CLIENT_REPORTED: {S.PENDING, S.SUCCEEDED, S.CLOSED, S.FAILED, S.NEEDS_ATTENTION},
        S.USER_PAYING: {S.SUCCEEDED, S.FAILED, S.REVOKED, S.CLOSED, S.NEEDS_ATTENTION},
        # Ops settle it from the channel's answer, or hand it back to the sweeps (PENDING).
        S.NEEDS_ATTENTION: {S.SUCCEEDED, S.CLOSED, S.FAILED, S.REVOKED, S.PENDING},
        S.SUCCEEDED: {S.REVOKED},  # payment code reversed after the money moved
        S.CLOSED: {S.SUCCEEDED},  # the channel took the money anyway
        S.FAILED: {S.SUCCEEDED},  # ditto: a late success is still money taken
        S.REVOKED: set(),
    },
    event=PaymentEvent,
)
payment_move = PAYMENT_TRANSITIONS.move

# States in which paycore still wants the payment to be paid.
OPEN_STATES = frozenset({S.CREATED, S.PENDING, S.CLIENT_REPORTED, S.USER_PAYING})
# ... and those in which it may still turn into money without paycore's doing.
UNSETTLED_STATES = OPEN_STATES | {S.NEEDS_ATTENTION}
# States in which paycore gave the payment up: money arriving later is recorded and refunded.
GIVEN_UP_STATES = frozenset({S.CLOSED, S.FAILED})
