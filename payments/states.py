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
        S.CREATED: {S.PENDING, S.USER_PAYING, S.SUCCEEDED, S.CLOSED, S.FAILED},
        S.PENDING: {S.CLIENT_REPORTED, S.SUCCEEDED, S.CLOSED, S.FAILED},
        S.CLIENT_REPORTED: {S.SUCCEEDED, S.CLOSED, S.FAILED},
        S.USER_PAYING: {S.SUCCEEDED, S.FAILED, S.REVOKED, S.CLOSED},
        S.SUCCEEDED: {S.REVOKED},  # payment code reversed after the money moved
        S.CLOSED: {S.SUCCEEDED},  # the channel took the money anyway
        S.FAILED: {S.SUCCEEDED},  # ditto: a late success is still money taken
        S.REVOKED: set(),
    },
    event=PaymentEvent,
)
payment_move = PAYMENT_TRANSITIONS.move

# States in which the payment may still turn into money without paycore's doing.
OPEN_STATES = frozenset({S.CREATED, S.PENDING, S.CLIENT_REPORTED, S.USER_PAYING})
